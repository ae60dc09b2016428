"""tfdgm's side of the Pyro RWS comparison (tfdgm's venv); the Pyro side is pyro_rws.py.

Same SBN-200, same data (run.py's stream: tfdgm's dynamically binarised batches, bit-packed), same
optimiser (Adam 1e-3, eps 1e-4): tfdgm.models.RWS(latent="bernoulli", latent_dim=200,
hidden_units=(), num_samples=K, phi_update="wake") with compile's defaults (XLA, 10 steps per
execution), 2 threads.

  --mode throughput: a warm-up fit, then one fit of --chunks epochs of --steps steps, each epoch a
                     timed window (in lockstep with other processes when run by
                     benchmarks/lockstep.py, as rws_lockstep.py does).
  --mode train:      --train_steps steps (the stream in order), weights written in pyro_rws.py's .npz
                     layout (also after each of --export_at steps).
  --mode evaluate:   loads each .npz of --weights into a tfdgm RWS, checks the conversion against the
                     check values stored with it (log p(x, z), log q(z|x) at the same z), and writes
                     IWAE-k test log-likelihoods (seed 0) on the first N images of the static test set.
Prints one JSON line prefixed PEER_RESULT.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402  (sets KERAS_BACKEND, paths)
from lockstep import epoch_window_timer  # noqa: E402
import numpy as np  # noqa: E402

RESULT_PREFIX = "PEER_RESULT "


def stream_images(path, steps=None):
    with np.load(path) as f:
        packed = f["packed"][:steps]
    bits = np.unpackbits(packed, axis=-1, count=784).astype(np.float32)  # [S, 100, 784]
    return bits.reshape(-1, 28, 28, 1)


def make(k, seed=0):
    import keras
    from tfdgm import models

    keras.utils.set_random_seed(seed)
    model = models.RWS(latent="bernoulli", latent_dim=200, hidden_units=(), num_samples=k, phi_update="wake",
                       seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-4))
    return model


def layers(model):
    return model.encoder.logits, model.decoder.logits, model.prior_layer


def export(model, path, x):
    import tensorflow as tf

    enc, dec, prior = layers(model)
    z = tf.cast(tf.random.stateless_uniform([len(x), 200], [0, 1]) < 0.5, tf.float32)
    log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
    np.savez(path, enc_w=enc.kernel.numpy(), enc_b=enc.bias.numpy(), dec_w=dec.kernel.numpy(),
             dec_b=dec.bias.numpy(), prior_logits=prior.logits.numpy(), check_x=x.reshape(len(x), -1),
             check_z=z.numpy(), check_log_pxz=(log_pz + log_px_z).numpy(),
             check_log_qz=model.posterior_log_prob(x, z).numpy())


def load(path):
    """A tfdgm RWS holding an .npz's weights, and the largest differences to the stored check values."""
    model = make(5)
    enc, dec, prior = layers(model)
    with np.load(path) as f:
        enc.kernel.assign(f["enc_w"]), enc.bias.assign(f["enc_b"])
        dec.kernel.assign(f["dec_w"]), dec.bias.assign(f["dec_b"])
        prior.logits.assign(f["prior_logits"])
        x, z = f["check_x"].reshape(-1, 28, 28, 1), f["check_z"]
        log_pz, log_px_z = model.log_prior_and_likelihood(z, x)
        check = {"max_abs_diff_log_pxz": float(np.abs((log_pz + log_px_z).numpy() - f["check_log_pxz"]).max()),
                 "max_abs_diff_log_qz": float(np.abs(model.posterior_log_prob(x, z).numpy()
                                                     - f["check_log_qz"]).max())}
    return model, check


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=["throughput", "train", "evaluate"])
    parser.add_argument("--stream", default=None)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--export_at", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights_out", default=None)
    parser.add_argument("--weights", default="", help="evaluate: comma-separated .npz files")
    parser.add_argument("--eval_k", type=int, default=5000)
    parser.add_argument("--num_test_examples", type=int, default=1000)
    parser.add_argument("--eval_out", default=None)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    result = {"peer": "tfdgm_rws", "k": args.k, "mode": args.mode, "tensorflow": tf.__version__}
    if args.mode == "throughput":
        need = args.warmup_steps + args.steps * args.chunks
        x = stream_images(args.stream, need)
        if len(x) < need * 100:  # a short stream is cycled, as pyro_rws.py's Stream does
            x = np.resize(x, (need * 100,) + x.shape[1:])
        # One fit over the stream, one epoch per timed window, as a user trains (a fit per window
        # would time Keras's per-fit set-up, ~1 s, against Pyro's bare step loop).
        data = tf.data.Dataset.from_tensor_slices(x).batch(100, drop_remainder=True)
        model = make(args.k)
        model.fit(data.take(args.warmup_steps), epochs=1, verbose=0)  # compiles
        timer = epoch_window_timer(args.steps * 100)  # takes turns when run by benchmarks/lockstep.py
        model.fit(data.skip(args.warmup_steps).repeat(), epochs=args.chunks, steps_per_epoch=args.steps, verbose=0,
                  callbacks=[timer])
        wall, cpu = timer.wall, timer.cpu
        result.update(steps=args.steps, examples_per_s=[args.steps * 100 / w for w in wall],
                      cores_busy=[c / w for c, w in zip(cpu, wall)])
    elif args.mode == "train":
        x = stream_images(args.stream, args.train_steps)
        model = make(args.k)
        marks = sorted({int(s) for s in args.export_at.split(",") if s} | {args.train_steps})
        start, done, exported = time.perf_counter(), 0, {}
        for mark in marks:  # fit in segments so the weights can be exported at each mark
            if mark > done:
                model.fit(x[done * 100:mark * 100], batch_size=100, epochs=1, verbose=0, shuffle=False)
            done = mark
            path = args.weights_out if mark == args.train_steps else args.weights_out.replace(".npz", f"_at{mark}.npz")
            export(model, path, x[:100])
            exported[mark] = path
        result.update(train_steps=args.train_steps, train_wall_s=time.perf_counter() - start, exported=exported)
    else:
        from tfdgm.evaluation.iwae import iwae_log_likelihoods

        test = common.static_test_set(seed=0)[:args.num_test_examples]
        out = {}
        for path in args.weights.split(","):
            model, check = load(path)
            t0 = time.perf_counter()
            ll = iwae_log_likelihoods(model, test, num_samples=args.eval_k, seed=0, verbose=False)
            out[path] = {"conversion_check": check, "eval_s": time.perf_counter() - t0, "nll": float(-ll.mean()),
                         "stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))), "log_px": ll.tolist()}
            print(f"# {path}: NLL {out[path]['nll']:.2f} +- {out[path]['stderr']:.2f} {check}", flush=True)
        with open(args.eval_out, "w") as f:
            json.dump(out, f)
        result["eval_out"] = args.eval_out
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
