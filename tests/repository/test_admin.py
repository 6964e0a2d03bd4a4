"""The model repository routes are closed by default and open only to the admin token."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.settings import Settings
from tests.repository.conftest import AUTH, LOAD, TOKEN, Files, upload_body

ROUTES = [LOAD, "/v2/repository/index", "/v2/repository/models/lenet5/unload"]
WRONG = "not-the-admin-token-at-all"


@pytest.mark.parametrize("route", [*ROUTES, "/v2/repository/models/tiny/load"])
def test_without_a_token_setting_the_routes_are_absent(client: TestClient, route: str) -> None:
    for headers in ({}, AUTH):
        response = client.post(route, headers=headers)
        assert response.status_code == 404
        assert "DIGITS_ADMIN_TOKEN is not set" in response.json()["error"]


def test_server_metadata_lists_the_repository_only_when_it_is_on(
    client: TestClient, admin: TestClient
) -> None:
    closed = client.get("/v2").json()["extensions"]
    assert "model_repository" not in closed and "statistics" in closed
    assert "model_repository" in admin.get("/v2").json()["extensions"]


@pytest.mark.parametrize("route", ROUTES)
def test_credentials_are_required_and_checked(admin: TestClient, route: str) -> None:
    missing = admin.post(route)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer ")
    assert "Authorization: Bearer" in missing.json()["error"]
    for header in (f"Basic {TOKEN}", "Bearer ", TOKEN):
        assert admin.post(route, headers={"Authorization": header}).status_code == 401
    for wrong in (WRONG, TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        response = admin.post(route, headers={"Authorization": f"Bearer {wrong}"})
        assert response.status_code == 403, wrong
        assert response.json() == {"error": "the admin token is not valid"}
    assert admin.post(route, headers={"authorization": f"bearer {TOKEN}"}).status_code != 401


def test_the_token_is_never_logged_or_echoed(
    admin: TestClient, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        admin.post(LOAD, headers={"Authorization": f"Bearer {WRONG}"}).text,
        admin.post(LOAD, headers=AUTH, json=upload_body(files.guessing)).text,
        admin.post(LOAD, headers=AUTH, json=upload_body(files.v2)).text,
        admin.get("/model").text,
        admin.get("/metrics").text,
    ]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "now serves" in logged  # the load was logged...
    for secret in (TOKEN, WRONG):
        assert secret not in logged  # ...without the token, right or wrong
        assert all(secret not in answer for answer in answers)
    assert TOKEN not in repr(admin.app.state.service.settings)  # type: ignore[attr-defined]


def test_a_short_token_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(admin_token="short")


def test_the_body_limit_must_admit_the_largest_upload(tmp_path: Path) -> None:
    with pytest.raises(
        ValidationError, match="raise DIGITS_MAX_BODY_BYTES or lower DIGITS_MAX_MODEL_BYTES"
    ):
        Settings(admin_token=TOKEN, max_model_bytes=8 * 2**20, max_body_bytes=10 * 2**20)
    Settings(max_model_bytes=8 * 2**20)  # no token: no uploads, no constraint
