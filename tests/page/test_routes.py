"""GET / and /static/*: served by the app itself, cache-validated, nothing outside the folder."""

from __future__ import annotations

from typing import Any

import pytest


def test_index_is_html_with_a_strict_policy(client: Any) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    # Everything the page needs is referenced relative to it, none of it from elsewhere.
    assert 'src="static/app.js"' in answer.text and 'href="static/style.css"' in answer.text
    assert "http://" not in answer.text and "https://" not in answer.text
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
def test_static_files_are_served_and_revalidated(client: Any, path: str, media_type: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.headers["cache-control"] == "no-cache"
    again = client.get(path, headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path", ["/static/missing.js", "/static/..%2Fapp.py", "/static/%2E%2E/routes/page.py"]
)
def test_nothing_else_is_served(client: Any, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_page_is_not_in_the_api_schema(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/static") for path in paths)


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/docs/assets/swagger-ui-bundle.js"])
@pytest.mark.parametrize(
    "byte_range", ["bytes=5-1", "bytes=99999999-", "bytes=abc", "items=0-1", "bytes=0-10"]
)
def test_a_range_header_gets_the_whole_file(client: Any, path: str, byte_range: str) -> None:
    """Starlette answered a Range it could not serve with a plain-text 400 or an empty 416:
    the only errors of the service that were not JSON. Ranges are ignored instead (RFC 9110
    section 14.2 allows it; nothing resumes these small files), valid ones too."""
    whole = client.get(path)
    answer = client.get(path, headers={"Range": byte_range})
    assert answer.status_code == 200, answer.text[:200]
    assert answer.content == whole.content
    assert "accept-ranges" not in answer.headers and "content-range" not in answer.headers
