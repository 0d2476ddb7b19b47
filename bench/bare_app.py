"""The baseline for the intake benchmark: a bare Flask handler that reads the body and answers 202,
served by gunicorn with the same settings as the bridge (``-c python:bridge.gunicorn_conf``)."""

from __future__ import annotations

from flask import Flask, request

app = Flask("bare")


@app.post("/webhooks/<platform>/<store_id>")
def receive(platform: str, store_id: str) -> tuple[dict[str, str], int]:
    request.get_data()
    return {"status": "queued", "job_id": "bare"}, 202
