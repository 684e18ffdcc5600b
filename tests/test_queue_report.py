"""The JSONL report: record format, safe appends, and what ``--resume`` re-queues."""

from __future__ import annotations

import json
import threading

import pytest

from nada_core.errors import InputError
from nada_queue.outputs import file_refs, local_relpath, safe_component
from nada_queue.report import (ReportWriter, iso_time, job_record, read_report, select_for_resume,
                                    variants_from_report)
from nada_queue.scheduler import Job
from nada_queue.variants import Variant


def finished_job(index=3, status="success"):
    job = Job(variant=Variant(index, {"1.width": 16, "2.sigma": 0.5}), workflow={}, label=f"v{index:03d}")
    job.status, job.server, job.prompt_id, job.attempts = status, "http://127.0.0.1:8188", "abc", 1
    job.queued_at, job.started_at, job.finished_at = 1000.0, 1002.5, 1006.0
    job.outputs = {"9": [{"filename": "a_00001_.png", "subfolder": "", "type": "output", "kind": "images"}]}
    return job


def test_job_record_fields_and_timings():
    rec = job_record(finished_job(), "run-1", "/w.json", "f" * 64)
    assert rec["index"] == 3 and rec["label"] == "v003" and rec["status"] == "success"
    assert rec["overrides"] == {"1.width": 16, "2.sigma": 0.5}
    assert rec["wait_seconds"] == 2.5 and rec["run_seconds"] == 3.5
    assert rec["queued_at"] == "1970-01-01T00:16:40.000Z" and rec["finished_at"] == "1970-01-01T00:16:46.000Z"
    assert rec["outputs"]["9"][0]["filename"] == "a_00001_.png"
    assert rec["server"] == "http://127.0.0.1:8188" and rec["prompt_id"] == "abc" and rec["run_id"] == "run-1"
    json.dumps(rec)  # JSON-able


def test_never_queued_job_has_null_times():
    job = Job(variant=Variant(0, {}), workflow={}, label="v000", status="cancelled")
    rec = job_record(job, "r", None, None)
    assert rec["queued_at"] is None and rec["wait_seconds"] is None and rec["run_seconds"] is None
    assert iso_time(None) is None


def test_writer_appends_and_reader_round_trips(tmp_path):
    path = tmp_path / "sub" / "report.jsonl"
    with ReportWriter(path) as w:
        w.write({"index": 0, "overrides": {"1.width": 8}, "status": "success"})
    with ReportWriter(path) as w:  # a second run appends
        w.write({"index": 1, "overrides": {"1.width": 9}, "status": "error", "error": "boom"})
    records = read_report(path)
    assert [r["index"] for r in records] == [0, 1] and records[1]["error"] == "boom"


def test_cut_line_from_a_crash_is_skipped_and_next_record_stays_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"index": 0, "overrides": {}, "status": "success"}\n{"index": 1, "overr')
    with ReportWriter(path) as w:
        w.write({"index": 2, "overrides": {"a.b": 1}, "status": "success"})
    warnings = []
    records = read_report(path, warn=warnings.append)
    assert [r["index"] for r in records] == [0, 2]
    assert len(warnings) == 1 and "line 2" in warnings[0]


def test_concurrent_writes_give_whole_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    with ReportWriter(path) as w:
        def burst(t):
            for i in range(50):
                w.write({"index": t * 100 + i, "overrides": {"x.y": "z" * 500}, "status": "success"})
        threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert sorted(json.loads(line)["index"] for line in lines) == sorted(t * 100 + i for t in range(4) for i in range(50))


def test_missing_report_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_report(tmp_path / "nope.jsonl")


def test_resume_selects_what_never_succeeded():
    variants = [Variant(i, {"1.width": w, "2.sigma": 0.5}) for i, w in enumerate((8, 16, 24, 32))]
    records = [
        {"index": 0, "overrides": {"2.sigma": 0.5, "1.width": 8}, "status": "success"},  # other key order
        {"index": 1, "overrides": {"1.width": 16, "2.sigma": 0.5}, "status": "invalid"},
        {"index": 2, "overrides": {"1.width": 24, "2.sigma": 0.5}, "status": "unreachable"},
        {"index": 2, "overrides": {"1.width": 24, "2.sigma": 0.5}, "status": "success"},  # a later resume
        {"index": 3, "overrides": {"1.width": 32, "2.sigma": 0.75}, "status": "success"},  # different value
    ]
    todo, done = select_for_resume(variants, records)
    assert [v.index for v in todo] == [1, 3]
    assert [v.index for v in done] == [0, 2]


def test_variants_from_report_keep_indices_once():
    records = [
        {"index": 4, "overrides": {"1.width": 16}, "status": "error"},
        {"index": 1, "overrides": {"1.width": 8}, "status": "success"},
        {"index": 4, "overrides": {"1.width": 16}, "status": "cancelled"},
    ]
    variants = variants_from_report(records)
    assert [(v.index, v.overrides) for v in variants] == [(1, {"1.width": 8}), (4, {"1.width": 16})]
    todo, _ = select_for_resume(variants, records)
    assert [v.index for v in todo] == [4]


def test_output_refs_and_download_names():
    history_outputs = {
        "9": {"images": [{"filename": "a_00001_.png", "subfolder": "sketch", "type": "output"}]},
        "12": {"images": [{"filename": "ComfyUI_temp_x.png", "subfolder": "", "type": "temp"}],
               "text": ["not a file"]},
        "13": {"gifs": [{"filename": "anim.webp", "type": "output"}], "animated": [True]},
    }
    refs = file_refs(history_outputs)
    assert set(refs) == {"9", "12", "13"}
    assert refs["9"] == [{"filename": "a_00001_.png", "subfolder": "sketch", "type": "output", "kind": "images"}]
    assert refs["13"][0]["kind"] == "gifs" and refs["13"][0]["subfolder"] == ""
    assert local_relpath(refs["9"][0], "v003") == "v003/sketch/a_00001_.png"
    assert local_relpath(refs["9"][0], "v003", "prefix") == "v003_sketch_a_00001_.png"
    evil = {"filename": "../../etc/passwd", "subfolder": "../..", "type": "output"}
    rel = local_relpath(evil, "v001")
    assert rel.startswith("v001/") and ".." not in rel.split("/")
    assert safe_component("..") == "_" and "/" not in safe_component("a/b")


def test_text_outputs_and_saved_files_from_history():
    from nada_queue.outputs import TEXT_LIMIT, saved_files, text_outputs, texts_relpath

    history_outputs = {
        "12": {"images": [{"filename": "p.png", "type": "temp"}], "text": ["directional 0.31\ndiversity 0.7"]},
        "20": {"text": ["nada/ffhq_sketch.safetensors", "nada/ffhq_sketch.pt"]},
        "21": {"text": ["nada/latents_00001.safetensors [output]"]},
        "13": {"animated": [True], "gifs": [{"filename": "a.webp"}]},
        "30": {"text": ["x" * (TEXT_LIMIT + 10)]},
        "40": "not an object",
    }
    workflow = {"12": {"class_type": "PreviewAny", "_meta": {"title": "Metrics"}},
                "20": {"class_type": "NadaSaveGenerator"}, "21": {"class_type": "NadaSaveLatent"}}
    texts = text_outputs(history_outputs, workflow)
    assert set(texts) == {"12", "20", "21", "30"}  # bools and file refs are not text
    assert texts["12"] == {"class_type": "PreviewAny", "title": "Metrics", "text": ["directional 0.31\ndiversity 0.7"]}
    assert texts["30"]["class_type"] is None and texts["30"]["text"][0].endswith("[10 more characters]")
    assert len(texts["30"]["text"][0]) < TEXT_LIMIT + 40
    assert saved_files(texts) == [
        {"node": "20", "class_type": "NadaSaveGenerator", "name": "nada/ffhq_sketch.safetensors", "folder": "models/stylegan"},
        {"node": "20", "class_type": "NadaSaveGenerator", "name": "nada/ffhq_sketch.pt", "folder": "models/stylegan"},
        {"node": "21", "class_type": "NadaSaveLatent", "name": "nada/latents_00001.safetensors", "folder": "output"},
    ]
    assert texts_relpath("v003") == "v003/texts.json" and texts_relpath("v003", "prefix") == "v003_texts.json"
