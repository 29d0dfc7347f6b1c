"""The JSON API's OpenAPI 3.1 document: generated from the routes that serve it (a new `/api/`
route appears by itself), and Schemathesis run against a live `skyport web` with a logged-in
admin session: no 5xx, every answer's status, content type and body as the document says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from dashboard import app as web_app
from dashboard import openapi
from tests.dashboard.conftest import make_dead
from tests.dashboard.support import CHEAP_USERS, PASSWORDS
from tests.support import SkyportProcess, free_port, wait_for

# Test cases per operation and the run's time budget: enough to reach every operation's checks,
# short enough for the suite (the run takes 20 to 30 s on 2 cores).
MAX_EXAMPLES = 5
MAX_TIME_S = 15
# These end the test's own session (every request after them would be 401).
SESSION_ENDERS = ("/api/logout", "/api/sessions/sign-out-everywhere")


def test_every_api_route_is_in_the_document_new_ones_too() -> None:
    async def extra(request: object) -> JSONResponse:
        """a route nobody described"""
        return JSONResponse({})

    routes = [*web_app.routes(), Route("/api/extra/{item_id:int}", extra, methods=["POST"])]
    doc = openapi.document(Starlette(routes=routes).routes)
    assert doc["openapi"] == "3.1.0"
    served = {re.sub(r":\w+}", "}", r.path) for r in routes if r.path.startswith("/api/")}
    documented = set(doc["paths"])
    assert served == documented
    new = doc["paths"]["/api/extra/{item_id}"]["post"]
    assert new["summary"] == "a route nobody described" and new["parameters"][0]["name"] == "item_id"
    assert new["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    jobs = doc["paths"]["/api/jobs"]["get"]
    state = next(p for p in jobs["parameters"] if p["name"] == "state")
    assert "dead" in state["schema"]["enum"]
    limit = next(p for p in jobs["parameters"] if p["name"] == "limit")["schema"]
    assert limit["minimum"] == 1 and limit["maximum"] == 500


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_every_answer_conforms(
    database_url: str, redis_namespace: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    make_dead(conn, "for-the-fuzzer")
    port = free_port()
    env = {
        "SKYPORT_DASHBOARD_USERS": CHEAP_USERS,
        "SKYPORT_SECRET_KEY": "openapi",
        "SKYPORT_WEB_ACCESS_LOG": "0",
    }
    with SkyportProcess(["web", "--port", str(port)], env) as web:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base), 30, 0.2, what=f"the web process\n{web.output()}")
        client = httpx.Client(base_url=base, timeout=10)
        assert client.get("/api/openapi.json").status_code == 401  # behind the login like the rest
        token = client.post("/api/login", json={"username": "ann", "password": PASSWORDS["ann"]}).json()
        document = client.get("/api/openapi.json")
        assert document.status_code == 200 and document.json()["openapi"] == "3.1.0"
        schema = tmp_path / "openapi.json"
        schema.write_text(json.dumps(document.json()))
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        argv = [
            str(Path(sys.executable).with_name("st")),
            "run",
            str(schema),
            "--url",
            base,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "coverage,fuzzing",
            "--max-time",
            str(MAX_TIME_S),
            "--seed",
            "20",
            "--workers",
            "1",
            "--no-color",
            # Hypothesis' health checks measure this machine's speed, not the API: off.
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
            "--header",
            f"Cookie: {cookie}",
            "--header",
            f"X-CSRF-Token: {token['csrf_token']}",
            *[arg for path in SESSION_ENDERS for arg in ("--exclude-path", path)],
        ]
        run = subprocess.run(
            argv, capture_output=True, text=True, timeout=MAX_TIME_S * 6, cwd=tmp_path, env=os.environ
        )
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:] + web.output()
        # Every operation but the session's enders was reached (a document Schemathesis could not
        # read in part would pass with fewer).
        selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
        tested = re.search(r"Tested: (\d+)", run.stdout)
        assert selected and tested, run.stdout[-3000:]
        operations = sum(len(ops) for ops in document.json()["paths"].values())
        assert int(selected[2]) == operations and int(tested[1]) == operations - len(SESSION_ENDERS)
        # The session lived through the run: the fuzzer acted as the admin, not as nobody.
        assert client.get("/api/me").status_code == 200


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
