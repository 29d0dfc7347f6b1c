"""The gateway adapters without a database: Stripe's minor units (zero- and three-decimal
currencies, lower-case codes), Paystack's channels and ids, Standard Webhooks' signatures checked
against the `standardwebhooks` library's, refusals naming the field from the body's top, and any
member of a gateway's body replaced by any JSON value: an event, ignored, or an EventError."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import standardwebhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.payments.body import EventError, decode_body
from jobs.payments.events import PaymentEvent, SignatureError
from jobs.payments.providers import ADAPTERS, Ignored
from tests.integration.hostile_bodies import dumps, json_values

SID = str(uuid.uuid4())
KEY = "whsec_" + base64.b64encode(b"unit-test-key-0123456789abcdef").decode()


def intent(amount: int, currency: str, kind: str = "payment_intent.succeeded") -> dict:
    return {"id": "evt_1", "object": "event", "type": kind, "created": 1_700_000_000, "data": {"object": {
        "id": "pi_1", "object": "payment_intent", "amount": amount, "currency": currency,
        "metadata": {"shipment_id": SID}, "payment_method_types": ["card"],
    }}}  # fmt: skip


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [(12550, "usd", "125.50"), (5000, "jpy", "5000.00"), (12340, "kwd", "12.34"), (1, "eur", "0.01"),
     (50000, "isk", "500.00")],  # ISK stays two-decimal in Stripe's API (100 is 1 krona)
)  # fmt: skip
def test_stripe_amounts_are_in_the_currencys_minor_unit(amount, currency, expected):
    event = ADAPTERS["stripe"].parse(intent(amount, currency))
    assert isinstance(event, PaymentEvent)
    assert (event.amount, event.currency, event.idempotency_key) == (
        Decimal(expected),
        currency.upper(),
        "pi_1",
    )
    assert (event.payment_method, str(event.shipment_id)) == ("credit_card", SID)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (intent(12345, "kwd"), "data.object.amount"),  # a three-decimal amount must end in 0
        (intent(-5, "usd"), "data.object.amount"),
        (intent(10**30, "usd"), "data.object.amount"),  # beyond the decimal context's 28 digits
        (intent(10**12 + 1, "jpy"), "data.object.amount"),  # beyond numeric(12, 2)
        (intent(100, "us"), "data.object.currency"),
        ({**intent(100, "usd"), "created": "yesterday"}, "created"),
        ({**intent(100, "usd"), "data": {}}, "data.object"),
    ],
)
def test_stripe_refusals_name_the_field(body, field):
    with pytest.raises(EventError) as caught:
        ADAPTERS["stripe"].parse(body)
    assert caught.value.field == field


def test_stripe_closings_other_than_won_lost_or_an_inquirys_and_other_types_are_ignored():
    dispute = {"id": "dp_1", "amount": 100, "currency": "usd", "charge": "ch_1", "status": "charge_refunded"}
    closed = {"id": "evt_2", "type": "charge.dispute.closed", "created": 1, "data": {"object": dispute}}
    assert isinstance(ADAPTERS["stripe"].parse(closed), Ignored)
    assert isinstance(ADAPTERS["stripe"].parse({**closed, "type": "invoice.paid"}), Ignored)


def test_a_stripe_inquiry_closed_without_a_chargeback_puts_the_money_back():
    # An inquiry opens as charge.dispute.created (warning_needs_response) like a chargeback, and
    # closes as warning_closed when it does not escalate: the amount its opening took off returns.
    dispute = {"id": "dp_1", "amount": 100, "currency": "usd", "charge": "ch_1", "status": "warning_closed"}
    closed = {"id": "evt_2", "type": "charge.dispute.closed", "created": 1, "data": {"object": dispute}}
    event = ADAPTERS["stripe"].parse(closed)
    assert isinstance(event, PaymentEvent) and event.type == "dispute.won"


def paystack_refund(**data: Any) -> dict:
    """refund.processed as Paystack documents it: no `id`, the amount as a string of minor units."""
    return {"event": "refund.processed", "data": {
        "status": "processed", "transaction_reference": "T2154954_412829_3be32076_6lcg3",
        "refund_reference": "132013318360", "amount": "5000", "currency": "NGN", "processor": "mpgs_zen",
        "customer": {"email": "payer@example.com"}, "integration": 412829, "domain": "live", **data,
    }}  # fmt: skip


def test_paystack_refund_processed_as_documented_is_one_refund_of_its_transaction():
    event = ADAPTERS["paystack"].parse(paystack_refund())
    assert isinstance(event, PaymentEvent) and event.movement is not None
    assert (event.id, event.idempotency_key, event.movement.id, event.movement.amount) == (
        "refund.processed:132013318360",
        "T2154954_412829_3be32076_6lcg3",
        "132013318360",
        Decimal("50.00"),
    )
    with_id = ADAPTERS["paystack"].parse(paystack_refund(id=3018284, amount=5000))
    assert isinstance(with_id, PaymentEvent) and with_id.movement is not None
    assert (with_id.id, with_id.movement.amount) == ("refund.processed:3018284", Decimal("50.00"))


def test_paystack_metadata_sent_as_a_json_string_still_names_the_shipment():
    # Paystack's API takes metadata as "stringified JSON"; a transaction may carry it so.
    body = {"event": "charge.success", "data": {
        "id": 1, "reference": "ref_1", "amount": 100, "currency": "NGN", "channel": "card",
        "metadata": json.dumps({"shipment_id": SID, "custom_fields": []}),
    }}  # fmt: skip
    event = ADAPTERS["paystack"].parse(body)
    assert isinstance(event, PaymentEvent) and str(event.shipment_id) == SID
    for metadata in ("", "not json", "[1]", json.dumps({"shipment_id": "nope"})[:-2]):
        assert isinstance(
            ADAPTERS["paystack"].parse({**body, "data": {**body["data"], "metadata": metadata}}), Ignored
        )


def test_paystack_types_not_read_are_ignored_whatever_their_data():
    # refund.pending has no id (Paystack's example): still 200 ignored, never a 400 retried for days.
    pending = {**paystack_refund(status="pending", refund_reference=None), "event": "refund.pending"}
    ignored = ADAPTERS["paystack"].parse(pending)
    assert isinstance(ignored, Ignored) and ignored.id.startswith("refund.pending:")
    assert ADAPTERS["paystack"].parse(json.loads(json.dumps(pending))).id == ignored.id
    other = ADAPTERS["paystack"].parse({**pending, "data": {**pending["data"], "amount": "1"}})
    assert isinstance(other, Ignored) and other.id != ignored.id


@pytest.mark.parametrize(
    ("data", "field"),
    [({"refund_reference": None}, "data.refund_reference"), ({"amount": "50.00"}, "data.amount"),
     ({"amount": "-5"}, "data.amount"), ({"amount": ""}, "data.amount")],
)  # fmt: skip
def test_paystack_refund_refusals_name_the_field(data, field):
    with pytest.raises(EventError) as caught:
        ADAPTERS["paystack"].parse(paystack_refund(**data))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("channel", "method"),
    [("card", "credit_card"), ("bank", "bank_transfer"), ("ussd", "bank_transfer"),
     ("mobile_money", "mobile_money"), ("qr", "other")],
)  # fmt: skip
def test_paystack_channels_map_onto_the_seeds_methods(channel, method):
    body = {"event": "charge.success", "data": {
        "id": 302961, "reference": "ref_1", "amount": 250000, "currency": "GHS", "channel": channel,
        "paid_at": "2026-12-06T21:10:19.000Z", "metadata": {"shipment_id": SID},
    }}  # fmt: skip
    event = ADAPTERS["paystack"].parse(body)
    assert isinstance(event, PaymentEvent)
    assert (event.id, event.idempotency_key, event.amount, event.payment_method) == (
        "charge.success:302961",
        "ref_1",
        Decimal("2500.00"),
        method,
    )
    assert event.created == int(datetime(2026, 12, 6, 21, 10, 19, tzinfo=UTC).timestamp())


def test_standard_webhooks_signatures_from_the_library_verify_and_tampering_does_not():
    raw = json.dumps({"id": "evt_1"}).encode()
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(KEY).sign("msg_1", now, raw)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": f"v1,bogus {signature}"}  # fmt: skip
    adapter = ADAPTERS["standard"]
    adapter.verify(headers, raw, ["whsec_other", KEY], 300, time.time())
    for changed in ({"webhook-id": "msg_2"}, {"webhook-timestamp": str(int(now.timestamp()) - 400)}):
        with pytest.raises(SignatureError):
            adapter.verify({**headers, **changed}, raw, [KEY], 300, time.time())
    with pytest.raises(SignatureError):
        adapter.verify(headers, raw + b" ", [KEY], 300, time.time())


def _stripe_and_paystack_bodies() -> st.SearchStrategy[tuple[str, bytes]]:
    """The gateways' documented bodies (payments, refunds, disputes) with one member anywhere
    replaced by any JSON value."""
    stripe_doc = intent(12550, "usd")
    paystack_doc = {"event": "charge.success", "data": {
        "id": 1, "reference": "r", "amount": 100, "currency": "NGN", "channel": "card",
        "paid_at": "2026-12-06T21:10:19.000Z", "metadata": {"shipment_id": SID},
    }}  # fmt: skip

    charge = {"id": "ch_1", "object": "charge", "amount": 12550, "amount_refunded": 5000, "currency": "usd",
              "payment_intent": "pi_1", "metadata": {"shipment_id": SID}}  # fmt: skip
    dispute = {"id": "dp_1", "object": "dispute", "amount": 12550, "currency": "usd", "charge": "ch_1",
               "payment_intent": "pi_1", "status": "lost"}  # fmt: skip
    stripe_refund = {**intent(1, "usd"), "type": "charge.refunded", "data": {"object": charge}}
    stripe_dispute = {**intent(1, "usd"), "type": "charge.dispute.closed", "data": {"object": dispute}}
    paystack_dispute = {"event": "charge.dispute.resolve", "data": {
        "id": 9, "refund_amount": 100, "currency": "NGN", "resolution": "merchant-accepted",
        "transaction": {"id": 1, "reference": "r", "amount": 100, "metadata": {"shipment_id": SID}},
    }}  # fmt: skip
    documents = [("stripe", stripe_doc), ("stripe", stripe_refund), ("stripe", stripe_dispute),
                 ("paystack", paystack_doc), ("paystack", paystack_refund()),
                 ("paystack", paystack_dispute)]  # fmt: skip

    @st.composite
    def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
        name, doc = draw(st.sampled_from(documents))
        doc = json.loads(json.dumps(doc))
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = draw(json_values)
        return name, dumps(doc)

    return mutated()


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in doc.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _paths(value, (*prefix, key))
    return paths


@settings(max_examples=300, deadline=None)
@given(case=_stripe_and_paystack_bodies())
def test_any_body_is_an_event_ignored_or_an_event_error(case):
    name, raw = case
    try:
        parsed = ADAPTERS[name].parse(decode_body(raw))
    except EventError as exc:
        assert exc.field
        return
    assert isinstance(parsed, PaymentEvent | Ignored)
