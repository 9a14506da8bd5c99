"""`geolink text-encoder`: the CLIP text encoder of the official multimodal weights, offline, online, from a folder.

A real download from the Hugging Face hub cannot run here: the hubs are unreachable from the machines these tests
run on. The offline path runs for real, as a separate `geolink` process (as a user runs it), both with
HF_HUB_OFFLINE and with the hub really unreachable, under a short timeout so that it cannot hang. The online path
runs the real huggingface_hub client against a local stand-in for the hub's HTTP API (FakeHub, via HF_ENDPOINT)
serving a tiny CLIP made here: what is downloaded, from which revision, progress, cancel and resume.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from geolink.cli import main as cli_main
from geolink.errors import InputError
from geolink.osm import clip_text, load_graph
from geolink.progress import Progress
from geolink.tasks import text_encoder

from .text_helpers import tiny_clip_folder

BACKEND = Path(__file__).resolve().parents[2] / "backend"
SMALL_OSM = Path(__file__).resolve().parents[1] / "data" / "osm" / "small.osm"
TILE = "24.936,60.1675,24.944,60.172"


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return tiny_clip_folder(tmp_path_factory.mktemp("tiny-clip") / "clip")


@pytest.fixture(autouse=True)
def own_folders(tmp_path, monkeypatch):
    """Nothing from this machine's data or caches: the default folder, the tag cache and the hub cache are empty."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("GEOLINK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("GEOLINK_CLIP_DIR", raising=False)


def geolink(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The `geolink` command from this source tree, in its own process, killed after 90 s."""
    full = dict(os.environ, PYTHONPATH=str(BACKEND), **env)
    return subprocess.run([sys.executable, "-m", "geolink.cli", *args], env=full, capture_output=True, text=True,
                          timeout=90)


def assert_says_what_to_do(stderr: str) -> None:
    assert "cannot be reached from this computer" in stderr
    assert "On a computer with internet" in stderr and clip_text.files_url() in stderr
    for name in clip_text.CLIP_FILES:
        assert name in stderr
    assert "choose it with --folder" in stderr


def test_offline_switch_gives_the_plain_words_error(tmp_path):
    target = tmp_path / "clip"
    done = geolink("text-encoder", "fetch", "--folder", str(target), HF_HUB_OFFLINE="1")
    assert done.returncode == 1, done.stderr
    assert "HF_HUB_OFFLINE is set" in done.stderr
    assert_says_what_to_do(done.stderr)
    assert not target.exists() and not target.with_name("clip.download").exists()


def test_unreachable_hub_gives_the_same_error_within_the_timeout(tmp_path):
    try:
        socket.getaddrinfo("huggingface.co", 443)
        pytest.skip("huggingface.co resolves here: this test would start a real 600 MB download")
    except OSError:
        pass
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    full = dict(env, PYTHONPATH=str(BACKEND), GEOLINK_HUB_TIMEOUT="5")
    done = subprocess.run([sys.executable, "-m", "geolink.cli", "text-encoder", "fetch"], env=full,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 1, done.stderr
    assert "huggingface.co" in done.stderr and "HF_HUB_OFFLINE" not in done.stderr
    assert_says_what_to_do(done.stderr)
    assert not (tmp_path / "data" / "geolink" / "text-encoders" / "clip-vit-base-patch16").exists()


def test_a_folder_is_checked_and_embeds_tags_end_to_end(clip_folder, tmp_path, monkeypatch, capsys):
    assert cli_main(["--quiet", "text-encoder", "check", "--folder", str(clip_folder)]) == 0
    out = capsys.readouterr().out
    assert "32-d tag embeddings" in out and f"GEOLINK_CLIP_DIR={clip_folder}" in out
    # As the plugin's setting passes it: the "clip" encoder of the official multimodal weights is that folder,
    # used to build a real graph from real OSM.
    import geolink.osm.text as text

    monkeypatch.setattr(text, "_MODELS", {})
    monkeypatch.setattr(text, "_CACHED", {})
    monkeypatch.setenv("GEOLINK_CLIP_DIR", str(clip_folder))
    graph = tmp_path / "graph.pt"
    assert cli_main(["--quiet", "osm-graph", "--osm", str(SMALL_OSM), "--bounds", TILE, "--text-encoder", "clip",
                     "--out", str(graph)]) == 0
    data = load_graph(str(graph))
    x = data["polygon"].x
    assert x.shape[0] > 0 and x.shape[1] == 32 + 8  # 32-d tag embeddings + 8 position values
    assert bool(x.isfinite().all()) and float(x[:, :32].std(0).mean()) > 0  # different tags, different vectors


def test_a_complete_folder_needs_no_hub(clip_folder):
    result = text_encoder.run(text_encoder.Config(action="fetch", folder=str(clip_folder)), Progress())
    assert result["outputs"]["folder"] == str(clip_folder) and result["figures"]["downloaded_mb"] == 0.0


def test_the_default_folder_is_found_without_settings(clip_folder, monkeypatch):
    import shutil

    shutil.copytree(clip_folder, clip_text.default_folder())
    assert clip_text.find_folder() == str(clip_text.default_folder())
    result = text_encoder.run(text_encoder.Config(action="check"), Progress())
    assert result["figures"]["dim"] == 32 and "found there by every command" in result["report"]


def test_incomplete_or_wrong_folders_are_refused_with_the_files_named(clip_folder, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for path in clip_folder.iterdir():
        if path.name != "model.safetensors":
            (pickled / path.name).write_bytes(path.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(InputError, match=r"lacks model\.safetensors \(it holds pytorch_model\.bin, a pickle") as err:
        clip_text.check_folder(pickled)
    assert "special_tokens_map.json" in err.value.hint and clip_text.files_url() in err.value.hint
    with pytest.raises(InputError, match="does not exist"):
        text_encoder.run(text_encoder.Config(action="check", folder=str(tmp_path / "absent")), Progress())
    busy = tmp_path / "documents"
    busy.mkdir()
    (busy / "letter.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds other files"):
        clip_text.fetch(busy, Progress())
    assert (busy / "letter.txt").read_text() == "mine"


def test_not_set_up_says_how(monkeypatch):
    with pytest.raises(InputError, match="not set up on this computer") as err:
        clip_text.find_folder()
    assert "text-encoder" in err.value.hint


def test_download_progress_is_reported_in_bytes_and_a_cancel_stops_it():
    """The progress bar class handed to snapshot_download, driven as the hub library drives it (a file-count bar and
    byte bars updated from download threads): the real download cannot run here."""
    import threading

    from geolink.errors import Cancelled

    events, cancel = [], threading.Event()
    bar = clip_text._progress_bar(Progress(events.append, cancel), total=int(200e6))
    files = bar(total=7, desc="Fetching 7 files")
    written = bar(total=0, initial=0, unit="B", unit_scale=True, desc="Reconstructing")
    received = bar(total=0, initial=0, unit="B", unit_scale=True, desc="Downloading bytes")
    worker = threading.Thread(target=lambda: [written.update(int(25e6)) for _ in range(4)])
    worker.start()
    worker.join()
    received.update(int(10e6))
    files.update(1)
    assert events[-1]["percent"] == 50.0 and events[-1]["message"].endswith("100.0 of 200.0 MB")
    cancel.set()
    with pytest.raises(Cancelled):
        written.update(1)
    for b in (files, written, received):
        b.close()


class FakeHub:
    """A stand-in for huggingface.co on 127.0.0.1 serving a repository's files at one commit through the hub's HTTP
    API (model info, file tree, resolve), so that the download path runs the real huggingface_hub client end to end
    (HF_ENDPOINT); every request is recorded."""

    def __init__(self, files: dict, revision: str, delay_s: float = 0.0):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files, self.revision, self.requests, self.delay_s = files, revision, [], delay_s
        hub = self
        oid = {name: hashlib.sha1(data).hexdigest() for name, data in files.items()}  # a git blob id

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body: bytes, kind: str = "application/json", extra: dict = None):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command == "GET":
                    for start in range(0, len(body), 1 << 16):
                        self.wfile.write(body[start:start + (1 << 16)])
                        if hub.delay_s:
                            import time

                            time.sleep(hub.delay_s)

            def _route(self):
                import json

                path = self.path.split("?")[0]
                hub.requests.append(f"{self.command} {path}")
                repo = f"/{clip_text.CLIP_REPO}"
                if path.startswith(f"/api/models{repo}/revision/"):
                    siblings = [{"rfilename": n, "size": len(d), "blobId": oid[n]} for n, d in hub.files.items()]
                    return self._send(json.dumps({"id": clip_text.CLIP_REPO, "sha": hub.revision,
                                                  "siblings": siblings}).encode())
                if path.startswith(f"/api/models{repo}/tree/"):
                    tree = [{"type": "file", "path": n, "size": len(d), "oid": oid[n]} for n, d in hub.files.items()]
                    return self._send(json.dumps(tree).encode())
                prefix = f"{repo}/resolve/{hub.revision}/"
                if path.startswith(prefix) and path[len(prefix):] in hub.files:
                    name = path[len(prefix):]
                    return self._send(hub.files[name], "application/octet-stream",
                                      {"X-Repo-Commit": hub.revision, "ETag": f'"{oid[name]}"'})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _route  # noqa: N815  (http.server names)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def clip_repository(clip_folder: Path) -> dict:
    """The files of the real repository's text-encoder part, from the tiny model (plus the pickled weights and a
    file the text encoder does not need, which must not be downloaded)."""
    files = {p.name: p.read_bytes() for p in clip_folder.iterdir() if p.is_file()}
    files.update({"vocab.json": b"{}", "merges.txt": b"#version: 0.2\n", "special_tokens_map.json": b"{}",
                  "pytorch_model.bin": b"\x80\x02 pickled", "preprocessor_config.json": b"{}"})
    return files


def test_fetch_through_the_hub_api_with_progress(clip_folder, tmp_path):
    """The online path against a local stand-in for the hub: only the needed files, at the pinned revision, progress
    as worker events, the folder in place only when complete; then a second fetch needs no hub."""
    import json

    hub = FakeHub(clip_repository(clip_folder), clip_text.CLIP_REVISION)
    target = tmp_path / "clip"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(BACKEND), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", GEOLINK_HUB_TIMEOUT="5")
    job = json.dumps({"task": "text-encoder", "config": {"action": "fetch", "folder": str(target)}})
    try:
        done = subprocess.run([sys.executable, "-m", "geolink.worker"], input=job + "\n", env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        hub.close()
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events and events[-1]["event"] == "result", done.stdout + done.stderr
    assert events[-1]["outputs"]["folder"] == str(target) and events[-1]["figures"]["dim"] == 32
    assert sorted(p.name for p in target.iterdir() if p.is_file()) == sorted(clip_text.CLIP_FILES)
    assert not target.with_name("clip.download").exists()
    fetched = {r.split("/")[-1] for r in hub.requests if r.startswith("GET") and "/resolve/" in r}
    assert fetched == set(clip_text.CLIP_FILES)  # never pytorch_model.bin nor files the encoder does not use
    assert all(f"/resolve/{clip_text.CLIP_REVISION}/" in r for r in hub.requests if "/resolve/" in r)
    download = [e for e in events if e["event"] == "progress" and "Downloading the CLIP" in e["message"]]
    assert download and download[-1]["message"].endswith(" MB")
    again = text_encoder.run(text_encoder.Config(action="fetch", folder=str(target)), Progress())
    assert again["figures"]["downloaded_mb"] == 0.0


def test_a_cancelled_download_leaves_no_folder_and_resumes(clip_folder, tmp_path):
    import json

    hub = FakeHub(clip_repository(clip_folder), clip_text.CLIP_REVISION, delay_s=0.3)  # a slow connection
    target = tmp_path / "clip"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(BACKEND), HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", GEOLINK_HUB_TIMEOUT="5")
    job = json.dumps({"task": "text-encoder", "config": {"action": "fetch", "folder": str(target)}})
    try:
        worker = subprocess.Popen([sys.executable, "-m", "geolink.worker"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env=env, text=True)
        worker.stdin.write(job + "\n")
        worker.stdin.flush()
        for line in worker.stdout:  # the user clicks Cancel once the download shows progress
            if "Downloading the CLIP" in line:
                worker.stdin.write("cancel\n")
                worker.stdin.flush()
                break
        assert worker.wait(timeout=60) == 2  # the worker's exit status for a cancelled job
        assert not target.exists() and target.with_name("clip.download").is_dir()
        hub.delay_s = 0.0
        done = subprocess.run([sys.executable, "-m", "geolink.cli", "text-encoder", "fetch", "--folder", str(target)],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr
    assert (target / "model.safetensors").is_file() and not target.with_name("clip.download").exists()
