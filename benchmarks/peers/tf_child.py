"""The TensorFlow side of the peer benchmark, one job per process (tfdgm's venv).

  --mode data:        writes the training stream (the first N batches of tfdgm's dynamically
                      binarised Fashion-MNIST pipeline, seed 0, bit-packed) for the PyTorch peers.
  --mode throughput:  tfdgm or the hand-written Keras model through benchmarks/throughput.py's
                      run_child (warm-up fit, then timed fits of --steps steps).
  --mode train:       --train_steps steps of model.fit, then the weights as the .npz layout of
                      torch_child.py (Dense kernels w0..w6, b0..b6, plus check_* outputs).
  --mode evaluate:    loads each .npz into a tfdgm model (same Burda MLP), checks the conversion
                      against the peer's own outputs, and runs tfdgm.evaluation.iwae_log_likelihoods
                      (IWAE-k, seed 0) on the first N images of the static test set.

Peers here: "tfdgm" (tfdgm.models.VAE for K = 1, IWAE otherwise; compile defaults: XLA, 10 steps
per execution) and "keras" (benchmarks/handwritten_iwae.py, graph mode, Keras's 1 step per execution).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import common  # noqa: E402  (sets KERAS_BACKEND, paths)
import numpy as np  # noqa: E402

RESULT_PREFIX = "PEER_RESULT "


def setup_tf(threads, seed=0):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    keras.utils.set_random_seed(seed)
    return tf


def throughput_cfg(peer, k):
    """The configuration dict of benchmarks/throughput.py for a peer."""
    if peer == "tfdgm":
        return {"model": "vae" if k == 1 else "iwae", "k": k, "jit": 1, "precision": "float32", "spe": None}
    if peer == "tfdgm_graph":  # tfdgm with jit_compile=False (faster at K = 50 on CPU, see BENCHMARKS.md)
        return {"model": "vae" if k == 1 else "iwae", "k": k, "jit": 0, "precision": "float32", "spe": None}
    if peer == "keras":
        return {"model": common.HANDWRITTEN, "k": k, "jit": 0, "precision": "float32", "spe": None}
    raise ValueError(f"unknown TensorFlow peer {peer!r}")


def dense_layers(model, peer):
    """The 7 Dense layers in export order, and (encode, decode) functions returning loc, scale / logits."""
    if peer.startswith("tfdgm"):
        enc, dec = model.encoder, model.decoder
        layers = enc.hidden + [enc.loc, enc.scale] + dec.hidden + [dec.logits]
        return layers, (lambda x: enc(x)), dec
    layers = model.encoder_body.layers + [model.enc_loc, model.enc_scale] + model.decoder.layers

    def encode(x):
        q = model.encode(x).distribution
        return q.loc, q.scale

    return layers, encode, model.decoder


def export(model, peer, path, x):
    layers, encode, decode = dense_layers(model, peer)
    assert len(layers) == 7, layers
    arrays = {}
    for i, layer in enumerate(layers):
        arrays[f"w{i}"] = np.asarray(layer.kernel.numpy())
        arrays[f"b{i}"] = np.asarray(layer.bias.numpy())
    loc, scale = encode(x.reshape(-1, 28, 28, 1) if peer.startswith("tfdgm") else x)
    arrays.update(check_x=x, check_loc=np.asarray(loc), check_scale=np.asarray(scale),
                  check_logits=np.asarray(decode(loc)).reshape(len(x), -1))
    np.savez(path, **arrays)


def train(args):
    setup_tf(args.threads, args.seed)
    cfg = throughput_cfg(args.peer, args.k)
    model = common.compile_model(common.make_model(cfg["model"], args.k, seed=args.seed), cfg["jit"], cfg["spe"])
    ds = common.train_dataset(batch_size=100, seed=args.seed, repeat=True)
    start = time.perf_counter()
    history = model.fit(ds, epochs=1, steps_per_epoch=args.train_steps, verbose=0)
    wall = time.perf_counter() - start
    first = next(iter(ds)).numpy().reshape(100, 784)  # the stream's first batch, as torch_child uses
    export(model, args.peer, args.weights_out, first)
    from throughput import _rss_mb

    return {"peer": args.peer, "k": args.k, "mode": "train", "train_steps": args.train_steps, "train_wall_s": wall,
            "final_loss": float(history.history["loss"][-1]), "weights": args.weights_out, "peak_rss_mb": _rss_mb()}


def load_into_tfdgm(path):
    """A tfdgm IWAE (Burda MLP) holding the weights of an exported .npz; and the conversion check."""
    model = common.make_model("iwae", 1, seed=0)
    layers, encode, decode = dense_layers(model, "tfdgm")
    with np.load(path) as f:
        for i, layer in enumerate(layers):
            layer.kernel.assign(f[f"w{i}"])
            layer.bias.assign(f[f"b{i}"])
        x = f["check_x"]
        loc, scale = encode(x.reshape(-1, 28, 28, 1))
        logits = np.asarray(decode(loc)).reshape(len(x), -1)
        check = {"max_abs_diff_loc": float(np.abs(np.asarray(loc) - f["check_loc"]).max()),
                 "max_abs_diff_scale": float(np.abs(np.asarray(scale) - f["check_scale"]).max()),
                 "max_abs_diff_logits": float(np.abs(logits - f["check_logits"]).max())}
    return model, check


def evaluate(args):
    setup_tf(args.threads, args.seed)
    from tfdgm.evaluation import iwae_log_likelihoods

    jobs = json.loads(args.jobs)  # [{"label":..., "weights":...}]
    test = common.static_test_set(seed=0)[:args.num_test_examples]
    out = []
    for job in jobs:
        model, check = load_into_tfdgm(job["weights"])
        start = time.perf_counter()
        log_px = iwae_log_likelihoods(model, test, num_samples=args.eval_k, batch_size=100, seed=args.seed,
                                      verbose=False)
        nll = -log_px
        out.append({**job, "conversion_check": check, "eval_wall_s": time.perf_counter() - start,
                    "test_nll": float(nll.mean()), "test_nll_se": float(nll.std(ddof=1) / np.sqrt(len(nll))),
                    "test_log_px": [float(v) for v in log_px]})
        print(f"# {job['label']}: test NLL {out[-1]['test_nll']:.2f} +- {out[-1]['test_nll_se']:.2f} "
              f"({out[-1]['eval_wall_s']:.0f}s) conversion {check}", flush=True)
    common.write_json(args.eval_out, out)
    return {"mode": "evaluate", "num_models": len(out)}


def write_data(args):
    setup_tf(args.threads, args.seed)
    import itertools

    ds = common.train_dataset(batch_size=100, seed=args.seed, repeat=True)
    batches = [x.numpy().reshape(100, 784).astype(np.uint8) for x in itertools.islice(iter(ds), args.stream_steps)]
    packed = np.packbits(np.stack(batches), axis=-1)  # [S, 100, 98]
    os.makedirs(os.path.dirname(os.path.abspath(args.stream)), exist_ok=True)
    np.savez(args.stream, packed=packed)
    return {"mode": "data", "stream": args.stream, "shape": list(packed.shape)}


def matmul_peak(args):
    """Best of 5 x 10 2048x2048 matmuls in fp32 and bf16, GFLOP/s: the roofline's ceiling."""
    tf = setup_tf(args.threads, args.seed)
    out = {"mode": "peak"}
    for name, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        a = tf.cast(tf.random.normal([2048, 2048]), dtype)
        matmul = tf.function(lambda a: tf.matmul(a, a))
        matmul(a).numpy()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                r = matmul(a)
            r.numpy()
            best = min(best, (time.perf_counter() - start) / 10)
        out[f"{name}_gflops"] = 2 * 2048 ** 3 / best / 1e9
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", required=True, choices=["data", "throughput", "train", "evaluate", "peak"])
    parser.add_argument("--peer", default="tfdgm", choices=["tfdgm", "tfdgm_graph", "keras"])
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=2)
    parser.add_argument("--warmup_steps", type=int, default=20)
    parser.add_argument("--train_steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights_out", default=None)
    parser.add_argument("--stream", default=None)
    parser.add_argument("--stream_steps", type=int, default=600)
    parser.add_argument("--jobs", default="[]", help="evaluate: JSON list of {label, weights}")
    parser.add_argument("--eval_k", type=int, default=5000)
    parser.add_argument("--num_test_examples", type=int, default=1000)
    parser.add_argument("--eval_out", default=None)
    args = parser.parse_args()
    if args.mode == "data":
        result = write_data(args)
    elif args.mode == "throughput":
        setup_tf(args.threads, args.seed)
        import throughput

        cfg = throughput_cfg(args.peer, args.k)
        result = throughput.run_child(cfg, args.steps, args.chunks, args.warmup_steps, 100)
        result.update(peer=args.peer, mode="throughput")
    elif args.mode == "train":
        result = train(args)
    elif args.mode == "peak":
        result = matmul_peak(args)
    else:
        result = evaluate(args)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.stderr.flush()
    # Skip the interpreter's teardown: a TensorFlow process with live tf.data threads sometimes
    # never exits (seen once in a lockstep run, blocked in a futex after its last window), and the
    # parent waits for the end of its output.
    os._exit(0)


if __name__ == "__main__":
    main()
