"""Verified downloads: a process-unique temporary file, a sha256 check, then an atomic rename.

`keras.utils.get_file` writes straight to the final path and has no read timeout, so two processes
fetching at once, a server that stalls or a connection cut short can leave a file under the final
name that looks complete. Here nothing appears under the final name unless every byte arrived and
its sha256 matches; a failed or interrupted download leaves at most a `.part-<pid>-<random>` file,
which is never read and is removed when the failure is seen.
"""
import hashlib
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid

CHUNK = 1 << 16


class DownloadError(OSError):
    """A download failed (unreachable, stalled, truncated, or with the wrong sha256)."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total, verbose):
    if not verbose:
        return None
    import keras

    # Progbar shows bytes done, the total and an ETA; without a size it counts bytes.
    return keras.utils.Progbar(total, unit_name="B")


def fetch(url, destination, sha256=None, *, timeout=30.0, verbose=None):
    """Downloads url to destination (if not already there with this sha256); returns destination.

    Args:
      url: http(s):// or file:// address.
      destination: final path; its directory is created.
      sha256: expected hex digest. None accepts any content (only for files whose hash is not yet
        known, e.g. a preset's metadata.json, which then supplies the other files' hashes).
      timeout: seconds without data after which the download is abandoned as stalled.
      verbose: show a progress bar with size and ETA (default: when stderr is a terminal).
    Raises:
      DownloadError naming the url and what went wrong; nothing is left under `destination`.
    """
    if os.path.exists(destination) and (sha256 is None or sha256_of(destination) == sha256):
        return destination
    verbose = sys.stderr.isatty() if verbose is None else verbose
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    partial = f"{destination}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        received, digest = 0, hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = _progress_bar(total, verbose)
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(received)
            out.flush()
            os.fsync(out.fileno())
        if total is not None and received != total:
            raise DownloadError(f"download of {url} is truncated: got {received} of {total} bytes. Retry; if it "
                                "persists, the server is serving a broken file.")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DownloadError(f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}: the file "
                                "is corrupted or not the one published. It was discarded; retry, or check the URL.")
        os.replace(partial, destination)  # atomic: another process's complete copy is equally valid
        return destination
    except (socket.timeout, TimeoutError) as error:
        raise DownloadError(f"download of {url} stalled: no data for {timeout:g} s ({error}).") from None
    except urllib.error.URLError as error:
        raise DownloadError(f"cannot download {url}: {getattr(error, 'reason', error)}.") from None
    except (ConnectionError, OSError) as error:
        if isinstance(error, DownloadError):
            raise
        # http.client's IncompleteRead (a cut connection) is not an OSError; see the handler below.
        raise DownloadError(f"download of {url} failed: {type(error).__name__}: {error}.") from None
    except Exception as error:  # noqa: BLE001  (http.client.IncompleteRead and friends)
        import http.client

        if isinstance(error, http.client.HTTPException):
            raise DownloadError(f"download of {url} is truncated or malformed: {type(error).__name__}: "
                                f"{error!r}.") from None
        raise
    finally:
        if os.path.exists(partial):
            os.remove(partial)
