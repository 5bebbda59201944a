"""The API's parts, one at a time: errors, request reading, the route table and its OpenAPI
document, and the middleware (on a tiny aiohttp app, not the bridge)."""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from pydantic import BaseModel

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.api import middleware
from bridge.api.errors import DOMAIN_ERRORS, ApiError
from bridge.api.handlers import PREFIX, MarketApi
from bridge.api.models import (
    ID_PATTERN,
    CloseTransactionRequest,
    CreateTransactionRequest,
    PaymentRequest,
)
from bridge.api.openapi import openapi_document
from bridge.api.requests import int_param, parse_body, path_id, time_param
from bridge.api.routes import ROUTES
from bridge.identity import avatars, lifecycle
from bridge.identity import errors as identity_errors
from bridge.market import errors as market_errors
from bridge.market.errors import Conflict, InvalidRequest, InvalidState, MarketError, NotFound

DOCS = Path(__file__).resolve().parents[3] / "docs"
TOKEN = "s3cret-api-token"
LOG = logging.getLogger("tests.api")

# --- ApiError -----------------------------------------------------------------------------

MAPPING = [
    (NotFound, 404, "MARKET_NOT_FOUND"),
    (InvalidRequest, 400, "MARKET_INVALID_PARAM"),
    (Conflict, 409, "MARKET_CONFLICT"),
    (InvalidState, 409, "MARKET_INVALID_STATE"),
]


@pytest.mark.parametrize(("error", "status", "errcode"), MAPPING)
def test_a_market_error_becomes_its_status_and_errcode_with_its_fields(
    error: type[MarketError], status: int, errcode: str
) -> None:
    api_error = ApiError.of(error("it went wrong", fields=["title", "buyer"]))
    assert (api_error.status, api_error.errcode, api_error.message) == (
        status,
        errcode,
        "it went wrong",
    )
    assert api_error.details == {"fields": ["title", "buyer"]}


@pytest.mark.parametrize(("error", "status", "errcode"), MAPPING)
def test_a_market_error_without_fields_has_no_details(
    error: type[MarketError], status: int, errcode: str
) -> None:
    response = ApiError.of(error("nope")).response()
    assert response.status == status
    assert json.loads(response.body) == {"errcode": errcode, "error": "nope"}


def test_every_market_error_class_has_a_status() -> None:
    classes = {
        value
        for module in (market_errors, identity_errors, avatars, lifecycle)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, MarketError) and value is not MarketError
    }
    assert classes == set(DOMAIN_ERRORS)
    assert {NotFound, InvalidRequest, Conflict, InvalidState} <= classes
    errcodes = [errcode for _, errcode in DOMAIN_ERRORS.values()]
    assert len(errcodes) == len(set(errcodes))


def test_a_subclass_of_a_market_error_keeps_its_parents_answer() -> None:
    class Gone(NotFound):
        pass

    error = ApiError.of(Gone("no such thing"))
    assert (error.status, error.errcode) == (404, "MARKET_NOT_FOUND")


def test_a_market_error_of_no_known_kind_is_an_internal_error_not_a_crash() -> None:
    error = ApiError.of(MarketError("what kind?"))
    assert (error.status, error.errcode) == (500, "MARKET_INTERNAL")


def test_an_api_error_answers_json_with_its_details() -> None:
    error = ApiError.invalid_param("limit: must be 1 to 10", fields=["limit"])
    response = error.response()
    assert response.status == 400 and response.content_type == "application/json"
    assert json.loads(response.body) == {
        "errcode": "MARKET_INVALID_PARAM",
        "error": "limit: must be 1 to 10",
        "fields": ["limit"],
    }
    assert str(error) == "limit: must be 1 to 10"


# --- parse_body ---------------------------------------------------------------------------

MODELS: dict[str, type[BaseModel]] = {
    "create": CreateTransactionRequest,
    "close": CloseTransactionRequest,
    "payment": PaymentRequest,
}
LIMIT = 1000


async def _parse(request: web.Request) -> web.Response:
    try:
        body = await parse_body(
            request,
            MODELS[request.match_info["model"]],
            LIMIT,
            empty_ok="empty_ok" in request.query,
        )
    except ApiError as e:
        return e.response()
    return web.json_response(body.model_dump(mode="json"))


@pytest.fixture
async def parser() -> AsyncIterator[TestClient]:
    app = web.Application()
    app.router.add_post("/{model}", _parse)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def party(name: str) -> dict[str, str]:
    return {"user_id": f"u-{name}", "matrix_id": f"@{name}:localhost"}


CREATE = {
    "transaction_id": "order-1",
    "title": "  Vintage bike ",
    "buyer": party("buyer"),
    "seller": party("seller"),
}


async def _post(client: TestClient, path: str, data: Any) -> tuple[int, dict[str, Any]]:
    async with client.post(path, data=data) as response:
        return response.status, await response.json()


async def test_a_valid_body_becomes_the_model(parser: TestClient) -> None:
    status, body = await _post(parser, "/create", json.dumps(CREATE))
    assert status == 200
    profile = {"display_name": None, "avatar_url": None, "email": None}
    assert body == {
        **CREATE,
        "title": "Vintage bike",
        "buyer": {**party("buyer"), **profile},
        "seller": {**party("seller"), **profile},
    }


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b"not json", b"\xff\xfe{}", b""])
async def test_a_body_that_is_not_json_is_bad_json(parser: TestClient, raw: bytes) -> None:
    status, body = await _post(parser, "/close", raw)
    assert status == 400
    assert body == {"errcode": "MARKET_BAD_JSON", "error": "The body is not valid JSON"}


@pytest.mark.parametrize("raw", ["[]", '["completed"]', '"completed"', "42", "null", "true"])
async def test_a_json_body_that_is_not_an_object_is_bad_json(parser: TestClient, raw: str) -> None:
    status, body = await _post(parser, "/close", raw)
    assert status == 400
    assert body == {"errcode": "MARKET_BAD_JSON", "error": "The body must be a JSON object"}


async def test_model_errors_name_each_field_and_its_problem(parser: TestClient) -> None:
    bad = {**CREATE, "buyer": {"user_id": "u b", "matrix_id": "buyer"}, "colour": "red"}
    status, body = await _post(parser, "/create", json.dumps(bad))
    assert status == 400 and body["errcode"] == "MARKET_INVALID_PARAM"
    problems = {p["field"]: p["problem"] for p in body["problems"]}
    assert set(problems) == {"buyer.user_id", "buyer.matrix_id", "colour"}
    assert "Matrix user ID" in problems["buyer.matrix_id"]
    assert problems["colour"] == "Extra inputs are not permitted"
    assert body["error"] == "; ".join(f"{p['field']}: {p['problem']}" for p in body["problems"])


async def test_a_problem_with_the_whole_body_is_named_body(parser: TestClient) -> None:
    same = {**CREATE, "seller": CREATE["buyer"]}
    status, body = await _post(parser, "/create", json.dumps(same))
    assert status == 400
    assert [p["field"] for p in body["problems"]] == ["body"]
    assert "different" in body["problems"][0]["problem"]


async def test_a_missing_field_is_named(parser: TestClient) -> None:
    status, body = await _post(parser, "/close", "{}")
    assert status == 400
    assert body["problems"] == [{"field": "outcome", "problem": "Field required"}]


async def test_a_body_over_the_limit_is_too_large(parser: TestClient) -> None:
    status, body = await _post(parser, "/close", b"{" + b" " * LIMIT + b"}")
    assert status == 413
    assert body == {"errcode": "MARKET_TOO_LARGE", "error": f"The body exceeds {LIMIT} bytes"}


async def test_a_body_of_exactly_the_limit_is_read(parser: TestClient) -> None:
    raw = json.dumps({"outcome": "completed"}).encode()
    raw = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(raw) == LIMIT
    assert await _post(parser, "/close", raw) == (200, {"outcome": "completed"})


async def test_a_chunked_body_over_the_limit_is_too_large_without_content_length(
    parser: TestClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b" " * 400

    async with parser.post("/close", data=chunks()) as response:
        assert response.status == 413
        assert (await response.json())["errcode"] == "MARKET_TOO_LARGE"
        assert response.request_info.headers.get("Content-Length") is None
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"


async def test_a_chunked_body_under_the_limit_is_read(parser: TestClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"outcome":'
        yield b' "refunded"}'

    assert await _post(parser, "/close", chunks()) == (200, {"outcome": "refunded"})


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    class Unread:
        def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
            raise AssertionError("the body was read")

    request = make_mocked_request(
        "POST", "/close", headers={"Content-Length": str(LIMIT + 1)}, payload=Unread()
    )
    with pytest.raises(ApiError) as raised:
        await parse_body(request, CloseTransactionRequest, LIMIT)
    assert (raised.value.status, raised.value.errcode) == (413, "MARKET_TOO_LARGE")


@pytest.mark.parametrize("raw", [b"", b"  \n\t ", b"{}"])
async def test_an_empty_body_is_an_empty_object_where_allowed(
    parser: TestClient, raw: bytes
) -> None:
    assert await _post(parser, "/payment?empty_ok", raw) == (200, {})


async def test_an_empty_body_is_bad_json_where_a_body_is_needed(parser: TestClient) -> None:
    status, body = await _post(parser, "/payment", b"")
    assert (status, body["errcode"]) == (400, "MARKET_BAD_JSON")


async def test_a_body_where_empty_is_allowed_is_still_checked(parser: TestClient) -> None:
    status, body = await _post(parser, "/payment?empty_ok", '{"amount": 5}')
    assert status == 400
    assert body["problems"] == [{"field": "amount", "problem": "Extra inputs are not permitted"}]


# --- int_param, time_param, path_id -------------------------------------------------------


def test_int_param_defaults_when_absent() -> None:
    assert int_param({}, "limit", 100, 1, 1000) == 100


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("1000", 1000), ("42", 42), ("-0", 0)])
def test_int_param_takes_values_within_its_bounds(raw: str, value: int) -> None:
    assert int_param({"limit": raw}, "limit", 100, 0, 1000) == value


@pytest.mark.parametrize("raw", ["0", "1001", "-5", "ten", "", "1.5", "1e3"])
def test_int_param_refuses_values_out_of_bounds_or_not_integers(raw: str) -> None:
    with pytest.raises(ApiError) as raised:
        int_param({"limit": raw}, "limit", 100, 1, 1000)
    error = raised.value
    assert (error.status, error.errcode) == (400, "MARKET_INVALID_PARAM")
    assert error.details == {"fields": ["limit"]} and error.message == "limit: must be 1 to 1000"


def test_time_param_is_none_when_absent() -> None:
    assert time_param({"until": "2026-11-25T10:00:00Z"}, "since") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T12:00:00+02:00", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T05:30:00-04:30", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("2026-11-25T10:00:00.250Z", datetime(2026, 11, 25, 10, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_time_param_reads_iso_8601_with_an_offset_as_ms(raw: str, expected: datetime) -> None:
    assert time_param({"since": raw}, "since") == int(expected.timestamp()) * 1000 + (
        expected.microsecond // 1000
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Times whose float timestamp times 1000 lands just short of the millisecond.
        ("2004-01-10T23:37:42.837Z", 1_073_777_862_837),
        ("2039-08-16T08:49:33.173Z", 2_197_097_373_173),
        # A date alone is its first millisecond in UTC.
        ("2026-11-25", 1_795_564_800_000),
    ],
)
def test_time_param_is_exact_to_the_millisecond(raw: str, expected: int) -> None:
    assert time_param({"since": raw}, "since") == expected


@pytest.mark.parametrize(
    "raw",
    ["2026-11-25T10:00:00", "20261125", "2026-11-2", "yesterday", "", "2026-13-01T00:00:00Z"],
)
def test_time_param_refuses_times_without_an_offset_or_not_times(raw: str) -> None:
    with pytest.raises(ApiError) as raised:
        time_param({"since": raw}, "since")
    assert (raised.value.status, raised.value.errcode) == (400, "MARKET_INVALID_PARAM")
    assert raised.value.details == {"fields": ["since"]}


def _with_match(name: str, value: str) -> web.Request:
    return make_mocked_request("GET", "/", match_info={name: value})


@pytest.mark.parametrize("value", ["order-1", "A.b_c:d-9", "x" * 128])
def test_path_id_takes_marketplace_ids(value: str) -> None:
    assert path_id(_with_match("transaction_id", value), "transaction_id") == value


@pytest.mark.parametrize("value", ["x" * 129, "order 1", "order/1", "ordre-é", "a\n", "#1"])
def test_path_id_refuses_anything_else_naming_the_parameter(value: str) -> None:
    with pytest.raises(ApiError) as raised:
        path_id(_with_match("dispute_id", value), "dispute_id")
    error = raised.value
    assert (error.status, error.errcode) == (400, "MARKET_INVALID_PARAM")
    assert error.details == {"fields": ["dispute_id"]} and error.message.startswith("dispute_id:")


# --- the route table and the OpenAPI document ---------------------------------------------


def test_every_route_is_answered_by_an_async_method_of_market_api() -> None:
    for route in ROUTES:
        handler = getattr(MarketApi, route.handler, None)
        assert inspect.iscoroutinefunction(handler), route.handler
        assert next(iter(inspect.signature(handler).parameters)) == "self"


def test_no_two_routes_share_a_method_and_path() -> None:
    pairs = [(route.method, route.path) for route in ROUTES]
    assert len(pairs) == len(set(pairs))


def test_the_document_has_every_documented_route_with_its_method_and_nothing_else() -> None:
    paths = openapi_document()["paths"]
    documented = {(r.method.lower(), r.path) for r in ROUTES if not r.public}
    in_document = {
        (method, path)
        for path, item in paths.items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert in_document == documented
    assert all(
        set(item) <= {"get", "post", "put", "patch", "delete", "parameters"}
        for item in paths.values()
    )


def test_the_routes_are_those_the_api_guide_describes() -> None:
    text = (DOCS / "api.md").read_text()
    calls = re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", text)

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path.removeprefix(PREFIX))

    described = {(method, shape(path)) for method, path in calls}
    assert described == {(r.method, shape(r.path)) for r in ROUTES}


def test_path_parameters_carry_the_marketplace_id_pattern() -> None:
    paths = openapi_document()["paths"]
    for route in ROUTES:
        if route.public:
            continue
        parameters = paths[route.path].get("parameters", [])
        assert [p["name"] for p in parameters] == route.path_params
        for parameter in parameters:
            assert parameter["in"] == "path" and parameter["required"] is True
            assert parameter["schema"] == {"type": "string", "pattern": ID_PATTERN}
    assert sum(bool(route.path_params) for route in ROUTES) >= 8


def test_bodies_and_responses_are_described_by_their_models() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for route in ROUTES:
        if route.public:
            continue
        operation = document["paths"][route.path][route.method.lower()]
        for code in route.ok:
            ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{route.response.__name__}"
        if route.body is None:
            assert "requestBody" not in operation
        else:
            request_body = operation["requestBody"]
            assert request_body["required"] is route.body_required
            ref = request_body["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas


def test_the_only_public_route_is_the_openapi_document() -> None:
    public = [(r.method, r.path, r.handler) for r in ROUTES if r.public]
    assert public == [("GET", "/openapi.json", "openapi")]
    assert "/openapi.json" not in openapi_document()["paths"]
    assert openapi_document()["security"] == [{"bearer": []}]


async def test_the_api_serves_its_document_without_a_token_and_nothing_else() -> None:
    api = MarketApi(TOKEN, LIMIT, *[None] * 10, 0, None)  # type: ignore[arg-type]
    app = web.Application()
    api.add_to(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        async with client.get(f"{PREFIX}/openapi.json") as response:
            assert response.status == 200
            assert await response.json() == json.loads(json.dumps(openapi_document()))
        for route in ROUTES:
            if route.public:
                continue
            path = PREFIX + route.path.replace("{", "").replace("}", "")
            async with client.request(route.method, path) as response:
                assert response.status == 401, route.path
                assert (await response.json())["errcode"] == "MARKET_MISSING_TOKEN"


# --- middleware ---------------------------------------------------------------------------

RAISES: dict[str, Exception] = {
    "not_found": NotFound("no transaction order-9"),
    "invalid": InvalidRequest("party on another server", fields=["buyer"]),
    "conflict": Conflict("order-1 exists with other content", fields=["title"]),
    "state": InvalidState("payment after close"),
    "homeserver": HomeserverUnavailable("connect: connection refused to 10.0.0.7"),
    "refused": MatrixError(403, "M_FORBIDDEN", "not in room"),
    "api": ApiError(418, "MARKET_TEAPOT", "short and stout", hint="tip me over"),
    "bug": KeyError("secret-internal-detail"),
}


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _raise(request: web.Request) -> web.Response:
    raise RAISES[request.match_info["what"]]


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = web.Application(middlewares=[middleware.errors(LOG), middleware.auth(TOKEN)])
    app.router.add_get("/doc", _ok, name=middleware.PUBLIC)
    app.router.add_get("/private", _ok)
    app.router.add_get("/raise/{what}", _raise)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _get(
    client: TestClient, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with client.get(path, headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}],
)
async def test_a_request_without_a_bearer_token_is_refused(
    api: TestClient, headers: dict[str, str]
) -> None:
    assert await _get(api, "/private", headers) == (
        401,
        {"errcode": "MARKET_MISSING_TOKEN", "error": "Missing Bearer token"},
    )


@pytest.mark.parametrize("token", ["wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
async def test_a_request_with_a_wrong_token_is_refused(api: TestClient, token: str) -> None:
    assert await _get(api, "/private", {"Authorization": f"Bearer {token}"}) == (
        401,
        {"errcode": "MARKET_UNKNOWN_TOKEN", "error": "Unknown token"},
    )


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_a_request_with_the_token_is_answered(api: TestClient, scheme: str) -> None:
    assert await _get(api, "/private", {"Authorization": f"{scheme} {TOKEN}"}) == (
        200,
        {"ok": True},
    )


async def test_a_public_route_needs_no_token(api: TestClient) -> None:
    assert await _get(api, "/doc") == (200, {"ok": True})
    assert await _get(api, "/doc", {"Authorization": "Bearer wrong"}) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("what", "status", "answer"),
    [
        ("not_found", 404, {"errcode": "MARKET_NOT_FOUND", "error": "no transaction order-9"}),
        (
            "invalid",
            400,
            {
                "errcode": "MARKET_INVALID_PARAM",
                "error": "party on another server",
                "fields": ["buyer"],
            },
        ),
        (
            "conflict",
            409,
            {
                "errcode": "MARKET_CONFLICT",
                "error": "order-1 exists with other content",
                "fields": ["title"],
            },
        ),
        ("state", 409, {"errcode": "MARKET_INVALID_STATE", "error": "payment after close"}),
        (
            "api",
            418,
            {"errcode": "MARKET_TEAPOT", "error": "short and stout", "hint": "tip me over"},
        ),
    ],
)
async def test_market_and_api_errors_become_their_answers(
    api: TestClient, what: str, status: int, answer: dict[str, Any]
) -> None:
    assert await _get(api, f"/raise/{what}", BEARER) == (status, answer)


async def test_an_unavailable_homeserver_is_a_503_without_its_details(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        status, body = await _get(api, "/raise/homeserver", BEARER)
    assert (status, body) == (
        503,
        {"errcode": "MARKET_HOMESERVER_UNAVAILABLE", "error": "The homeserver is unavailable"},
    )
    assert any("10.0.0.7" in r.getMessage() for r in caplog.records if r.name == LOG.name)


async def test_a_refusing_homeserver_is_a_503(api: TestClient) -> None:
    status, body = await _get(api, "/raise/refused", BEARER)
    assert (status, body["errcode"]) == (503, "MARKET_HOMESERVER_UNAVAILABLE")
    assert body["error"] == "The homeserver refused: 403 M_FORBIDDEN: not in room"


async def test_an_unexpected_exception_is_a_500_without_a_stack_trace(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        async with api.get("/raise/bug", headers=BEARER) as response:
            status, text = response.status, await response.text()
    assert status == 500
    assert json.loads(text) == {
        "errcode": "MARKET_INTERNAL",
        "error": "Internal error; the call can be retried",
    }
    assert "Traceback" not in text and "secret-internal-detail" not in text
    [record] = [r for r in caplog.records if r.name == LOG.name]
    assert record.getMessage() == "GET /raise/bug failed" and record.exc_info is not None


async def test_an_unknown_path_is_not_found_and_a_wrong_method_not_allowed(
    api: TestClient,
) -> None:
    assert await _get(api, "/nowhere", BEARER) == (
        404,
        {"errcode": "MARKET_NOT_FOUND", "error": "No such endpoint"},
    )
    async with api.post("/private", headers=BEARER) as response:
        assert response.status == 405
        assert (await response.json())["errcode"] == "MARKET_METHOD_NOT_ALLOWED"
