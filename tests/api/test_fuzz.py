"""The marketplace API under generated input (schemathesis, from our own OpenAPI document):
valid and invalid calls alike get an answer the document allows (status, content type and
body schema), never a 500; without the right token every operation is 401."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.api.openapi import openapi_document
from bridge.api.routes import ROUTES
from tests.harness import BridgeProcess, free_port, make_config, random_secret

schema = schemathesis.openapi.from_dict(openapi_document())
TOKEN = random_secret()


@pytest.fixture(scope="module")
def bridge_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A bridge process on SQLite whose homeserver is unreachable: creates answer 503."""
    import asyncio

    workdir = tmp_path_factory.mktemp("fuzz")
    config = make_config(
        database_url=f"sqlite://{workdir / 'bridge.db'}",
        homeserver_url=f"http://127.0.0.1:{free_port()}",
        bridge_port=free_port(),
        api_token=TOKEN,
    )
    process = BridgeProcess(config, Path(workdir))
    process.launch()
    try:
        asyncio.run(_until_listening(process))
        yield f"http://127.0.0.1:{config.server.port}/api/v1"
    finally:
        process.kill()


async def _until_listening(process: BridgeProcess) -> None:
    from aiohttp import ClientError, ClientSession

    from tests.harness import eventually

    async with ClientSession() as session:

        async def listening() -> bool:
            assert process.process is not None and process.process.poll() is None, process.log()
            try:
                async with session.get(process.url("/health")) as response:
                    return response.status == 200
            except ClientError:
                return False

        await eventually(listening, within=30)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_input_makes_a_server_error(case, bridge_url: str) -> None:
    response = case.call(base_url=bridge_url, headers={"Authorization": f"Bearer {TOKEN}"})
    # 503: this bridge's homeserver is unreachable on purpose.
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        assert response.json()["errcode"].startswith("MARKET_"), response.text
    # The answer is one the document declares, with the body its schema describes.
    case.validate_response(response, checks=CONFORMANCE)


CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [
    (method.upper(), path)
    for path, item in openapi_document()["paths"].items()
    for method in item
    if method != "parameters"
]
ROUTED = [(route.method, route.path) for route in ROUTES if not route.public]
BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer "},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN.swapcase()}"},
    {"Authorization": f"Bearer {random_secret()}"},
]


def test_every_operation_is_covered() -> None:
    # The parametrization below reads the document: it holds every route the API serves
    # (bridge/api/routes.py) but the public document itself, and nothing else.
    assert ROUTED and sorted(OPERATIONS) == sorted(ROUTED)
    assert ("GET", "/openapi.json") not in OPERATIONS  # the one public call is not listed


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_missing_or_wrong_auth_is_401_on_every_operation(
    method: str, path: str, bridge_url: str
) -> None:
    operation = schema[path][method]

    @given(operation.as_strategy())
    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    def refused(case) -> None:
        for headers in BAD_AUTH:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k != "Authorization"}
            response = case.call(base_url=bridge_url, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            errcode = response.json()["errcode"]
            assert errcode in ("MARKET_MISSING_TOKEN", "MARKET_UNKNOWN_TOKEN"), response.text
            case.validate_response(response, checks=CONFORMANCE)

    refused()
