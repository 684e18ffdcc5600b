"""The shipped canvas workflows in ComfyUI's real web app, in headless Chromium.

One ComfyUI server (CPU, temporary base directory with tiny models, this pack as a custom node)
and one browser serve the module. Each ``workflows/NAME.json`` is loaded into the app with
``app.loadGraphData``, model names and step counts are pointed at the tiny models through the
nodes' widgets (as a user would pick them), the app converts the graph (``app.graphToPrompt``) and
queues it through its own Queue path (``app.queuePrompt``), and the run must succeed on the server.
The browser is driven over the Chrome DevTools Protocol with the repository's small websocket client.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); set ``NADA_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.comfy_harness import load_api_workflow, make_model_tree, tiny_overrides, unavailable_reason
from workflows.build_workflows import BUILTIN_NODES, VIRTUAL_NODES, WORKFLOW_NAMES
from workflows.canvas_layout import WINDOW, overlaps

CHROMIUM = os.environ.get("NADA_CHROMIUM") or next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
REASON = unavailable_reason() or (None if CHROMIUM else
                                  "headless Chromium not found (apt-get install -y chromium, or set NADA_CHROMIUM)")
pytestmark = [pytest.mark.comfyui, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

REPO = Path(__file__).resolve().parents[1]
WF_DIR = REPO / "workflows"


class Browser:
    """Headless Chromium with one page, driven through the DevTools protocol."""

    def __init__(self, workdir: Path) -> None:
        from nada_queue.websocket import WebSocket

        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True)
        self.log = open(workdir / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit {self.proc.poll()}); see {workdir / 'chromium.log'}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        self.ws = WebSocket.connect(page["webSocketDebuggerUrl"])
        self._id = 0

    def cdp(self, method: str, timeout: float = 120.0, **params) -> dict:
        self._id += 1
        self.ws.send_text(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            if msg is None:
                break
            data = json.loads(msg)
            if data.get("id") == self._id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data["result"]
        raise TimeoutError(f"{method}: no answer within {timeout:.0f} s")

    def eval(self, expression: str, timeout: float = 120.0):
        """Evaluate JavaScript (awaiting promises); returns the JSON-decoded value of a JSON string."""
        res = self.cdp("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                       returnByValue=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JavaScript failed: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.comfy_server import ComfyServer

    base = tmp_path_factory.mktemp("frontend")
    (base / "input").mkdir()
    make_model_tree(base)
    server = ComfyServer(base, custom_nodes=[REPO]).start()
    browser = None
    try:
        browser = Browser(tmp_path_factory.mktemp("browser"))
        server.wait_ready(timeout=180)
        # The window the shipped layouts are made for (workflows/canvas_layout.py)
        browser.cdp("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1,
                    mobile=False)
        browser.cdp("Page.navigate", url=server.url)
        deadline = time.monotonic() + 90
        while browser.eval("!!(window.app && window.app.graph && window.app.api)") is not True:
            if time.monotonic() > deadline:
                raise TimeoutError("ComfyUI's web app did not start in the browser")
            time.sleep(0.25)
        yield browser, server
    finally:
        if browser is not None:
            browser.close()
        server.stop()


LOAD_AND_QUEUE = """(async () => {
  await app.loadGraphData(%(workflow)s);
  const overrides = %(overrides)s;
  for (const [id, change] of Object.entries(overrides)) {
    const node = app.graph.getNodeById(Number(id));
    for (const [name, value] of Object.entries(change)) {
      const widget = (node.widgets || []).find(w => w.name === name);
      if (!widget) throw new Error(`node ${id} (${node.type}) has no widget ${name}`);
      widget.value = value;
    }
  }
  const nodes = app.graph.nodes.map(n => ({id: n.id, type: n.type, has_errors: !!n.has_errors,
    registered: !!LiteGraph.registered_node_types[n.type], widgets: (n.widgets || []).map(w => w.name)}));
  const converted = await app.graphToPrompt();
  const original = app.api.queuePrompt;
  let response = null, failure = null;
  app.api.queuePrompt = async function (...args) {
    try { response = await original.apply(this, args); return response; }
    catch (e) { failure = e.response || String(e); throw e; }
  };
  let ok;
  try { ok = await app.queuePrompt(0, 1); } finally { app.api.queuePrompt = original; }
  return JSON.stringify({nodes, prompt: converted.output, ok, response, failure});
})()"""


# Where the app draws each node (screen pixels, title bar included) and the parts of its own UI
# that cover the canvas: the canvas panel (right of the side bar, below the tab bar and the
# workflow-name / Run bar row), the workflow-name box, the Run bar, the minimap and the zoom buttons.
LAYOUT = """(async () => {
  await app.extensionManager.setting.set('Comfy.Minimap.Visible', true);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const rect = e => { if (!e) return null; const r = e.getBoundingClientRect();
                      return r.width > 0 && r.height > 0 ? [r.x, r.y, r.width, r.height] : null; };
  const ds = app.canvas.ds;
  const nodes = app.graph.nodes.map(n => { const b = n.getBounding();
    return {id: n.id, type: n.type, title: n.title,
            box: [(b[0] + ds.offset[0]) * ds.scale, (b[1] + ds.offset[1]) * ds.scale, b[2] * ds.scale, b[3] * ds.scale]}; });
  const zoom = [...document.querySelectorAll('.p-buttongroup')].find(e => e.getBoundingClientRect().bottom > innerHeight - 8);
  const texts = [...document.querySelectorAll('textarea')].filter(t => t.readOnly && t.value.trim().length > 0)  // Preview as Text shows results read-only
    .map(t => ({sw: t.scrollWidth, cw: t.clientWidth, sh: t.scrollHeight, ch: t.clientHeight, wrap: getComputedStyle(t).whiteSpace}));
  return JSON.stringify({window: [innerWidth, innerHeight], nodes, texts,
    panel: rect(document.querySelector('.graph-canvas-panel')),
    covers: {workflow_name: rect(document.querySelector('.subgraph-breadcrumb .p-breadcrumb-item')),
             run_bar: rect(document.querySelector('.actionbar-container')),
             minimap: rect(document.querySelector('.minimap-main-container')), zoom_buttons: rect(zoom)}});
})()"""


def layout_problems(browser) -> tuple[list[str], dict]:
    """Nodes (and notes) that overlap, leave the canvas panel, or sit under the app's own boxes."""
    got = json.loads(browser.eval(LAYOUT))
    assert got["window"] == list(WINDOW)
    assert got["panel"] and got["covers"]["minimap"], f"canvas panel or minimap not found: {got}"
    px, py, pw, ph = got["panel"]
    problems = []
    for i, n in enumerate(got["nodes"]):
        x, y, w, h = n["box"]
        name = f"#{n['id']} {n['title'] or n['type']}"
        if x < px - 0.5 or y < py - 0.5 or x + w > px + pw + 0.5 or y + h > py + ph + 0.5:
            problems.append(f"{name} {[round(v) for v in n['box']]} leaves the canvas panel {[round(v) for v in got['panel']]}")
        for what, box in got["covers"].items():
            if box and overlaps(n["box"], box):
                problems.append(f"{name} is under the {what} box")
        for m in got["nodes"][i + 1:]:
            if overlaps(n["box"], m["box"]):
                problems.append(f"{name} overlaps #{m['id']} {m['title'] or m['type']}")
    return problems, got


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_canvas_layout_fits_a_1600x1000_window_with_the_minimap(app, name):
    browser, _ = app
    canvas = json.loads((WF_DIR / f"{name}.json").read_text(encoding="utf-8"))
    browser.eval("(async () => { await app.loadGraphData(%s); return 1; })()" % json.dumps(canvas))
    problems, got = layout_problems(browser)
    assert problems == [], f"{name}: " + "; ".join(problems)
    assert len(got["nodes"]) == len(canvas["nodes"])


def backend_inputs(class_type: str, object_info: dict) -> set[str]:
    spec = object_info[class_type]["input"]
    return set(spec.get("required", {})) | set(spec.get("optional", {}))


def test_app_knows_every_pack_node_with_tooltips(app):
    browser, server = app
    from nodes import NODE_CLASS_MAPPINGS

    registered = json.loads(browser.eval("JSON.stringify(Object.keys(LiteGraph.registered_node_types))"))
    assert set(NODE_CLASS_MAPPINGS) <= set(registered)
    info = server.get("/object_info")
    for name in NODE_CLASS_MAPPINGS:
        node = info[name]
        assert node["category"].startswith("NADA/") and node["display_name"].startswith("NADA ")
        assert node["description"]
        for section in ("required", "optional"):
            for inp, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{name}.{inp}"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_canvas_workflow_runs_from_the_web_app(app, name):
    browser, server = app
    canvas = json.loads((WF_DIR / f"{name}.json").read_text(encoding="utf-8"))
    overrides = tiny_overrides(name)
    result = json.loads(browser.eval(LOAD_AND_QUEUE % {"workflow": json.dumps(canvas),
                                                       "overrides": json.dumps(overrides)}))
    broken = [n for n in result["nodes"] if n["has_errors"] or not n["registered"]]
    assert broken == [], f"missing or broken nodes after loading {name}.json: {broken}"
    assert sorted(n["id"] for n in result["nodes"]) == sorted(n["id"] for n in canvas["nodes"])

    # The app's own conversion equals the shipped API file (with the same tiny-model changes).
    expected = load_api_workflow(name, overrides)
    converted = result["prompt"]
    assert sorted(converted, key=int) == sorted(expected, key=int)
    assert not any(n["type"] in VIRTUAL_NODES for n in canvas["nodes"] if str(n["id"]) in converted)
    info = server.get("/object_info")
    for node_id, entry in expected.items():
        got = converted[node_id]
        assert got["class_type"] == entry["class_type"]
        keys = backend_inputs(entry["class_type"], info)
        assert {k: v for k, v in got["inputs"].items() if k in keys} == entry["inputs"], f"{name} #{node_id}"
        if entry["class_type"] not in BUILTIN_NODES:
            assert set(got["inputs"]) == set(entry["inputs"]), f"{name} #{node_id}: extra inputs from the app"

    assert result["failure"] is None, f"the server refused the queued prompt: {result['failure']}"
    # (app.queuePrompt's own return value is not a success flag: it is `!lastNodeErrors`, and the
    # server answers `node_errors: {}` on success, so it is false either way; use the response.)
    assert result["response"] and result["response"]["node_errors"] == {}
    prompt_id = result["response"]["prompt_id"]
    history = server.wait_for(lambda: (server.history(prompt_id) or {}).get("status", {}).get("completed") is not None
                              and server.history(prompt_id), timeout=120, what=f"{name} to finish")
    status = history["status"]
    errors = [m for m in status["messages"] if m[0] in ("execution_error", "execution_interrupted")]
    assert status["status_str"] == "success" and status["completed"] and not errors, errors
    saving = [i for i, e in expected.items() if e["class_type"] in ("SaveImage", "SaveAnimatedWEBP")]
    for node_id in saving:
        images = history["outputs"][node_id]["images"]
        assert images and all((server.output_dir / i["subfolder"] / i["filename"]).is_file() for i in images)

    # After the run, nodes showing previews and results must still fit where they were placed.
    deadline, last = time.monotonic() + 10, None
    while True:  # previews arrive over the websocket: wait until the layout stops changing
        problems, got = layout_problems(browser)
        if got["nodes"] == last or time.monotonic() > deadline:
            break
        last = got["nodes"]
        time.sleep(0.5)
    assert problems == [], f"{name} after a run: " + "; ".join(problems)
    if any(e["class_type"] == "PreviewAny" for e in expected.values()):
        assert got["texts"], "the text output (metrics, directions, domain) is not shown"
        for t in got["texts"]:  # wrapped and fully visible, no scrolling needed
            assert t["wrap"] in ("pre-wrap", "pre-line", "normal", "break-spaces") and t["sw"] <= t["cw"], t
            assert t["sh"] <= t["ch"] + 1, f"metrics text needs scrolling: {t}"


def test_templates_browser_lists_the_canvas_workflows_with_thumbnails(app):
    """ComfyUI lists every ``workflows/*.json`` of a pack under Templates -> Extensions and asks for
    ``NAME.jpg`` as the card's thumbnail: only the canvas workflows may be listed, each opens as a
    graph, and each has a JPEG thumbnail."""
    browser, server = app
    pack = REPO.name  # the server links the pack into custom_nodes under its folder name
    listed = server.get("/workflow_templates")
    assert sorted(listed.get(pack, [])) == sorted(WORKFLOW_NAMES), listed
    for name in WORKFLOW_NAMES:
        base = f"{server.url}/api/workflow_templates/{pack}/{name}"
        with urllib.request.urlopen(base + ".json", timeout=10) as r:
            graph = json.loads(r.read())
        assert graph.get("version") == 0.4 and graph["nodes"], f"{name}.json is not a canvas workflow"
        with urllib.request.urlopen(base + ".jpg", timeout=10) as r:
            data = r.read()
            assert r.headers.get_content_type() == "image/jpeg" and data[:3] == b"\xff\xd8\xff", name
    # The app itself loads the template the way the browser's card does (fetch, then loadGraphData).
    ok = browser.eval("""(async () => {
      const r = await fetch('api/workflow_templates/%s/%s.json');
      await app.loadGraphData(await r.json());
      return JSON.stringify(app.graph.nodes.length);
    })()""" % (pack, WORKFLOW_NAMES[0]))
    assert json.loads(ok) == len(json.loads((WF_DIR / f"{WORKFLOW_NAMES[0]}.json").read_text())["nodes"])


def test_learning_rate_widget_keeps_small_values(app):
    """The front end rounds FLOAT widgets (to the step's decimals unless the input says "round"):
    NADA Train's lr must keep 0.00005 as typed, and the server must accept it."""
    browser, server = app
    canvas = json.loads((WF_DIR / "text_to_domain.json").read_text(encoding="utf-8"))
    train_id = next(n["id"] for n in canvas["nodes"] if n["type"] == "NadaTrain")
    got = json.loads(browser.eval("""(async () => {
      await app.loadGraphData(%s);
      const node = app.graph.getNodeById(%d);
      const w = node.widgets.find(w => w.name === 'lr');
      const out = {};
      for (const v of [0.00005, 0.00123, 0.002]) {
        w.setValue(v, {e: undefined, node, canvas: app.canvas});
        out[String(v)] = w.value;
      }
      const prompt = (await app.graphToPrompt()).output;
      return JSON.stringify({values: out, sent: prompt['%d'].inputs.lr});
    })()""" % (json.dumps(canvas), train_id, train_id)))
    assert got["values"] == {"0.00005": 0.00005, "0.00123": 0.00123, "0.002": 0.002}, got
    assert got["sent"] == 0.002
