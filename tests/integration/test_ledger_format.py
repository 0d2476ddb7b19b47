"""The ledger's compact stored form: what it writes reads back the same, a long value keeps the hash
a listpack, and entries an earlier version wrote as JSON (kept for 400 days) are still read, and
replaced by the compact form when they change. Real Redis."""

from __future__ import annotations

from decimal import Decimal

from redis import Redis

from workers.ledger import AWARD, REFUND_PREFIX, SKIPPED, AppliedRefund, Award, Ledger, Note

AWARD_ENTRY = Award(transaction_id=9001, points=278, base=Decimal("27.83"), order_total=Decimal("27.83"),
                    currency="EUR", order_id="4210", at="2026-12-01T10:14:02+00:00", user_id=55, loyalty_card_id=66,
                    card_number="4400123412341234", presentment_total=Decimal("30.10"), presentment_currency="USD",
                    taxes_included=False, source="already existed")
REFUND_ENTRY = AppliedRefund(points=48, amount=Decimal("4.84"), at="2026-12-02T08:00:00+00:00", transaction_id=9002,
                             currency="EUR", share=Decimal("0.1739130434782608695652173913"))


def test_what_is_written_reads_back_the_same_in_a_listpack(redis_conn: Redis) -> None:
    ledger = Ledger(redis_conn, retention=400 * 86400)
    # An in-flight mark (about 400 bytes of JSON) is cut into chunks too: one long value would make
    # the hash a hash table for good.
    token = ledger.mark_in_flight("coffee-woo", "WC-4210", AWARD, "paid-coffee-woo-4210", award=AWARD_ENTRY)
    assert ledger.get("coffee-woo", "WC-4210").inflight[AWARD].award == AWARD_ENTRY
    assert not ledger.clear_in_flight("coffee-woo", "WC-4210", AWARD, "another attempt's token")
    assert ledger.clear_in_flight("coffee-woo", "WC-4210", AWARD, token)
    assert ledger.get("coffee-woo", "WC-4210").inflight == {}
    ledger.mark_in_flight("coffee-woo", "WC-4210", AWARD, "paid-coffee-woo-4210", award=AWARD_ENTRY)
    ledger.record_award("coffee-woo", "WC-4210", AWARD_ENTRY)
    ledger.record_refund("coffee-woo", "WC-4210", "4301", REFUND_ENTRY)
    # A time that is not the ledger's own (UTC, to the second) is kept as written.
    odd = REFUND_ENTRY.model_copy(update={"points": 0, "kind": "cancel", "share": None,
                                          "at": "2026-12-02T10:00:00.5+02:00",
                                          "source": "the order earned nothing (a reason | with a bar, " + "x" * 120})
    ledger.record_refund("coffee-woo", "WC-4210", "cancel", odd)
    record = ledger.get("coffee-woo", "WC-4210")
    assert record.award == AWARD_ENTRY and record.inflight == {}
    assert record.refunds == {"4301": REFUND_ENTRY, "cancel": odd}
    assert record.order_id == "4210"
    key = Ledger.key("coffee-woo", "WC-4210")
    assert redis_conn.object("encoding", key) in (b"ziplist", b"listpack")      # a long reason continues
    assert redis_conn.ttl(key) > 399 * 86400
    # Shorter again: the continuations of the long value go with it.
    ledger.record_refund("coffee-woo", "WC-4210", "cancel", REFUND_ENTRY)
    assert ledger.get("coffee-woo", "WC-4210").refunds["cancel"] == REFUND_ENTRY
    assert not [f for f in redis_conn.hkeys(key) if f.startswith(b"r:cancel+")]


def test_entries_an_earlier_version_wrote_are_read_and_replaced_when_they_change(redis_conn: Redis) -> None:
    ledger = Ledger(redis_conn, retention=400 * 86400)
    key = Ledger.key("coffee-woo", "WC-4210")
    skipped = Note(reason="a guest order without an email", event="paid", at="2026-12-01T10:14:02+00:00")
    # As the ledger wrote it until December 2026: a JSON document per entry, under its long name.
    redis_conn.hset(key, mapping={AWARD: AWARD_ENTRY.model_dump_json(),
                                  REFUND_PREFIX + "4301": REFUND_ENTRY.model_dump_json()})
    redis_conn.hset(Ledger.key("coffee-woo", "WC-4211"), SKIPPED, skipped.model_dump_json())
    redis_conn.zadd(ledger.awards_key("coffee-woo"), {"WC-4210": 1764584042})
    record = ledger.get("coffee-woo", "WC-4210")
    assert (record.award, record.refunds) == (AWARD_ENTRY, {"4301": REFUND_ENTRY})
    assert ledger.get("coffee-woo", "WC-4211").skipped == skipped
    assert ledger.awarded_between("coffee-woo", 1764584000, 1764590000) == ["WC-4210"]

    later = REFUND_ENTRY.model_copy(update={"points": 30, "transaction_id": 9003})
    ledger.record_refund("coffee-woo", "WC-4210", "4302", later)
    ledger.update_award("coffee-woo", "WC-4210", AWARD_ENTRY.model_copy(update={"card_number": "4400999"}))
    record = ledger.get("coffee-woo", "WC-4210")
    assert record.award is not None and record.award.card_number == "4400999"
    assert record.refunds == {"4301": REFUND_ENTRY, "4302": later} and record.points_remaining == 278 - 48 - 30
    assert AWARD.encode() not in redis_conn.hkeys(key)                            # replaced by the compact form
