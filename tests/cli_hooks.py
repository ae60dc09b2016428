"""`python -m tests.cli_hooks train ...`: the tfdgm CLI with test hooks chosen by environment.

TFDGM_TEST_FIXED_NOISE=1      reparameterisation noise from `harness.fixed_replica_noise`, so a
                              multi-worker run can be compared with a one-process run exactly.
TFDGM_TEST_PAUSE_AT_STEP=N    after optimizer step N print "PAUSED AT STEP N" and sleep, so the
                              test can SIGKILL the process at a known point mid-epoch.
TFDGM_TEST_DIE_IN_SAVE_AT_STEP=N  SIGKILL itself half-way through writing the training state
                              of step N (the state file is written, truncated, never renamed).
"""
import os
import signal
import sys
import time


def _install_hooks():
    from tfdgm import callbacks as cbs
    from tfdgm import distributions as dists

    if os.environ.get("TFDGM_TEST_FIXED_NOISE"):
        from tests.harness import fixed_replica_noise

        dists.gaussian_sample = fixed_replica_noise()

    pause_at = int(os.environ.get("TFDGM_TEST_PAUSE_AT_STEP", 0))
    if pause_at:
        on_batch_end = cbs.TrainingCheckpoint.on_train_batch_end

        def pausing(self, batch, logs=None):
            on_batch_end(self, batch, logs)
            if cbs._step(self.model) >= pause_at:
                print(f"PAUSED AT STEP {cbs._step(self.model)}", flush=True)
                time.sleep(3600)

        cbs.TrainingCheckpoint.on_train_batch_end = pausing

    die_at = int(os.environ.get("TFDGM_TEST_DIE_IN_SAVE_AT_STEP", 0))
    if die_at:
        write = cbs.TrainingCheckpoint._write_state

        def dying(self, path, arrays):
            write(self, path, arrays)
            if cbs._step(self.model) == die_at:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        cbs.TrainingCheckpoint._write_state = dying


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    _install_hooks()
    from tfdgm import cli

    cli.run(sys.argv)
