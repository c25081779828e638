"""The Python client (flatc --python from wire/mesob.fbs plus wire/python/mesob_client.py)
against a live mesobd: runs wire/python/example.py and checks what it prints.

Run by ctest with Debian's python3 and python3-flatbuffers:
    python_client_test.py <mesobd> <generated python dir> <wire/python dir> <mesob console>

Then a gateway registered through the admin port (the console) deposits, and a payout
goes out through it: the instruction pushed to it, its answer, a duplicate answer.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def accounts_when(client, ids, done):
    """The accounts `ids`, looked up until done(accounts) holds (at most about 2 s): what
    answers set going (posts, voids, sweeps) runs after the answer."""
    for _ in range(200):
        accounts = client.lookup_accounts(ids)
        if done(accounts):
            break
        time.sleep(0.01)
    return accounts


mesobd, generated, helper, console = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sys.path[:0] = [generated, helper]
with tempfile.TemporaryDirectory(prefix="mesob-py-") as data:
    d = subprocess.Popen([mesobd, "--data-dir", data, "--port", "0", "--admin-port", "0", "--metrics-port", "0", "--shards", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = ""
    for line in d.stdout:
        out += line
        if "ready" in line:
            break
    m = re.search(r"mesobd: listening on 127\.0\.0\.1:(\d+)", out)
    s = re.search(r"development gateway \"dev\" \(every role\), secret ([0-9a-f]+)", out)
    assert m and s, "mesobd did not start:\n" + out
    admin_port = re.search(r"admin listening on 127\.0\.0\.1:(\d+)", out).group(1)
    env = dict(os.environ, PYTHONPATH=generated + os.pathsep + helper)
    r = subprocess.run([sys.executable, os.path.join(helper, "example.py"), m.group(1), "dev", s.group(1)],
                       env=env, capture_output=True, text=True, timeout=60)

    # A gateway, registered through the admin port.
    reg = subprocess.run([console, "--port", admin_port, "--gateway", "dev", "--secret", s.group(1), "--json",
                          "gateway", "register", "tb", "mobile_money", "1", "payments", "ETB=9001", "timeout_ms=2000"],
                         capture_output=True, text=True, timeout=60)
    answer = json.loads(reg.stdout)
    assert answer["code"] == "ok", reg.stdout + reg.stderr
    secret = next(sec["rows"][0]["secret_hex"] for sec in answer["sections"] if sec["title"].startswith("credentials"))
    from mesob_client import Client
    port = int(m.group(1))
    pay = Client("127.0.0.1", port, "dev", bytes.fromhex(s.group(1)))
    tb = Client("127.0.0.1", port, "tb", bytes.fromhex(secret))
    assert pay.create_accounts([dict(id=301, currency="ETB", flags=1)]) == [0]
    assert tb.deposit([dict(reference=77, wallet=301, amount=5000, currency="ETB")]) == [0]
    assert tb.deposit([dict(reference=77, wallet=301, amount=5000, currency="ETB")]) == [0]  # a retry
    assert tb.deposit([dict(reference=77, wallet=301, amount=4000, currency="ETB")]) == [30]  # other content
    assert pay.payouts([dict(id=5, wallet=301, amount=1200, destination=251911223344, currency="ETB", rail=1)]) == [0]
    ins = tb.payout_instructions()
    assert len(ins) == 1 and ins[0]["payout_id"] == 5 and ins[0]["attempt"] == 1 and ins[0]["amount"] == 1200, ins
    assert ins[0]["destination"] == 251911223344, ins
    ans = dict(payout_id=5, attempt=1, amount=1200, currency="ETB", outcome=Client.SETTLED)
    assert tb.payout_answers([ans]) == [0]
    assert tb.payout_answers([ans]) == [176]  # a duplicate: payout_already_resolved
    # The post is at once; the sweep into the settlement account follows it.
    wallet, settlement = accounts_when(pay, [301, 9001], lambda a: a[1]["credits_posted"] == 1200)
    assert wallet["credits_posted"] == 5000 and wallet["debits_posted"] == 1200, wallet
    assert settlement["debits_posted"] == 5000 and settlement["credits_posted"] == 1200, settlement
    # A payout the destination declines: failed, marked declined; the hold is voided.
    assert pay.payouts([dict(id=6, wallet=301, amount=300, destination=251911223345, currency="ETB", rail=1)]) == [0]
    ins = tb.payout_instructions()
    assert len(ins) == 1 and ins[0]["payout_id"] == 6, ins
    declined = dict(payout_id=6, attempt=1, amount=300, currency="ETB", outcome=Client.FAILED, reason=53)
    assert tb.payout_answers([dict(declined, outcome=Client.SETTLED, failure=Client.DECLINED)]) == [178]  # invalid
    assert tb.payout_answers([dict(declined, failure=Client.DECLINED)]) == [0]
    wallet = accounts_when(pay, [301], lambda a: a[0]["debits_pending"] == 0)[0]
    assert wallet["debits_pending"] == 0 and wallet["debits_posted"] == 1200, wallet
    print("gateway: deposit, payout, answer, decline: ok")

    # An equb group whose second seat takes its payout on through tb: round 2's payout is
    # held on that seat's wallet and sent to tb under a payout id the engine makes (the
    # top bit set); tb settles it.
    assert pay.create_accounts([dict(id=311, currency="ETB", flags=1), dict(id=312, currency="ETB", flags=1)]) == [0, 0]
    assert tb.deposit([dict(reference=78, wallet=311, amount=5000, currency="ETB"),
                       dict(reference=79, wallet=312, amount=5000, currency="ETB")]) == [0, 0]
    assert pay.equb([dict(kind=Client.CREATE, group=720, currency="ETB", contribution=1000,
                          period_ns=7 * 86400 * 10**9, fee_account=102)]) == [0]
    assert [pay.pay_equb(9500 + w, w, 720, 0, 0, 1000, "ETB") for w in (311, 312)] == [0, 0]
    route = dict(kind=Client.PAYOUT_TO, group=720, seat=1, wallet=312, rail=1, destination=251900000312)
    assert pay.equb([dict(route, wallet=311)]) == [113]  # not_a_member
    assert pay.equb([dict(route, rail=3)]) == [170]      # payout_rail_unserved: no bank gateway
    assert pay.equb([dict(route, destination=0)]) == [183]  # payout_destination_missing
    assert pay.equb([route]) == [0]
    g = pay.lookup_groups([720])[0]
    assert g["seats"][1]["payout_rail"] == 1 and g["seats"][1]["destination"] == 251900000312, g
    assert g["seats"][0]["payout_rail"] == 0 and g["seats"][0]["destination"] == 0, g
    assert g["held"] == 0 and g["seats"][0]["debt_to_group"] == 0, g
    assert g["round_deadline"] == 0 and g["round_close"] == 0, g  # forming: no round
    before = time.time_ns()
    assert pay.equb([dict(kind=Client.START, group=720)]) == [0]  # round 1: seat 0, to its wallet
    # Round 2 is due a period after the start (the engine clock is the wall clock); no grace.
    g = pay.lookup_groups([720])[0]
    week = 7 * 86400 * 10**9
    assert g["round"] == 2 and before + week - 10**9 <= g["round_deadline"] <= time.time_ns() + week + 10**9, g
    assert g["round_close"] == g["round_deadline"], g
    assert pay.pay_equb(9510, 311, 720, 2, 0, 1000, "ETB") == 0
    assert pay.pay_equb(9511, 312, 720, 2, 1, 1000, "ETB") == 0  # round 2: seat 1, on through tb
    ins = tb.payout_instructions()
    assert len(ins) == 1 and ins[0]["payout_id"] >> 63 == 1 and ins[0]["amount"] == 2000, ins
    assert ins[0]["destination"] == 251900000312, ins
    assert tb.payout_answers([dict(payout_id=ins[0]["payout_id"], attempt=ins[0]["attempt"], amount=2000,
                                   currency="ETB", outcome=Client.SETTLED)]) == [0]
    w312 = accounts_when(pay, [312], lambda a: a[0]["debits_posted"] == 4000)[0]
    # Paid in 2 x 1000, received the pot of 2000 and sent it on.
    assert w312["credits_posted"] == 7000 and w312["debits_posted"] == 4000, w312
    print("equb payout through a gateway: ok")
    # replace_account: another fee account for the group (a closed one never takes a fee).
    # The new account must exist, hold ETB and be no escrow.
    replace = dict(kind=Client.REPLACE_ACCOUNT, group=720, replaced=102, by=103)
    assert pay.equb([replace]) == [119]                       # replacement_account_unfit: no 103 yet
    assert pay.create_accounts([dict(id=103, currency="ETB"), dict(id=104, currency="USD")]) == [0, 0]
    assert pay.equb([dict(replace, by=104)]) == [119]         # replacement_account_unfit: USD
    assert pay.equb([dict(replace, by=720)]) == [119]         # replacement_account_unfit: the escrow
    assert pay.equb([dict(replace, replaced=4242)]) == [131]  # account_not_in_group
    assert pay.equb([replace]) == [0]
    assert pay.equb([replace]) == [131]                       # 102 is named nowhere now
    print("equb replace_account: ok")
    # write_off: an ended group's seat's debts; group 720 completed with every seat paid.
    assert pay.equb([dict(kind=Client.WRITE_OFF, group=720, seat=0, wallet=311, amount=1)]) == [135]  # nothing_owed
    assert pay.equb([dict(kind=Client.WRITE_OFF, group=720, seat=0, wallet=312, amount=1)]) == [113]  # not_a_member
    print("equb write_off: ok")

    # Trading: an instrument, prices with sequences, a move halt and an operator's resume
    # (the dev gateway has every role); a customer of a tier the console sets, whose
    # limit the ledger enforces.
    etel = dict(kind=Client.DEFINE, id=42, symbol="ETEL", cls=Client.EQUITY, currency="ETB", tick=1, lot=10,
                move_bp=500, move_window_ms=60000, stale_ms=60000, halt_ms=60000)
    assert pay.instruments([etel, dict(etel, id=43)]) == [0, 203]  # symbol_in_use
    assert pay.prices([(42, 1000, 1), (42, 1000, 1), (42, 999, 1), (42, 1100, 2), (42, 1001, 1)]) == [0, 0, 30, 0, 222]
    ins = pay.lookup_instruments([42, 44])
    assert ins[1] is None and ins[0]["symbol"] == "ETEL" and ins[0]["last_ticks"] == 1100, ins
    assert ins[0]["reasons"] == 2 and ins[0]["halts"] == 1 and ins[0]["prices"] == 2, ins  # +10% over 5%: a move halt
    assert pay.instruments([dict(kind=Client.RESUME, id=42)]) == [0]
    assert pay.lookup_instruments([42])[0]["reasons"] == 0
    assert pay.lookup_instruments([42])[0]["sequence"] == 2
    assert pay.instruments([dict(kind=Client.RESEQUENCE, id=42, sequence=0)]) == [0]  # the feed counts again
    assert pay.prices([(42, 1100, 1)]) == [0] and pay.lookup_instruments([42])[0]["sequence"] == 1
    tier = subprocess.run([console, "--port", admin_port, "--gateway", "dev", "--secret", s.group(1), "--json",
                           "tier", "set", "1", "ETB", "1000", "5000", "100000"], capture_output=True, text=True, timeout=60)
    assert json.loads(tier.stdout)["code"] == "ok", tier.stdout + tier.stderr
    kyc = dict(wallet=301, kyc=Client.VERIFIED, profile=Client.MODERATE, tier=1, sequence=1, reference=9)
    assert pay.customers([kyc, dict(kyc, sequence=0), dict(kyc, tier=2, sequence=2)]) == [0, 10, 215]
    c = pay.lookup_customers([301, 311])
    assert c[1] is None and c[0]["kyc"] == Client.VERIFIED and c[0]["tier"] == 1, c
    assert pay.create_transfers([dict(id=9900, debit=301, credit=311, amount=1001, currency="ETB"),
                                 dict(id=9901, debit=301, credit=311, amount=1000, currency="ETB")]) == [218, 0]
    assert pay.lookup_customers([301])[0]["outflow_today"] == 1000
    # A provider that counts again from 1 after an operator's resequence to 0.
    # A provider that counts again from 1 after an operator's resequence to 0 (the dev
    # gateway has the admin role too).
    assert pay.customers([dict(kyc, sequence=1, reference=10)]) == [30]  # exists_with_different_fields
    assert pay.customers([dict(kind=Client.CUSTOMER_RESEQUENCE, wallet=301, sequence=0)]) == [0]
    assert pay.customers([dict(kyc, sequence=1, reference=10)]) == [0]
    print("trading: instruments, prices, halts, customers: ok")

    # Orders: the moderate profile trades equities; a broker registered through the
    # console gets the order pushed, fills it, and the wallet pays.
    prof = subprocess.run([console, "--port", admin_port, "--gateway", "dev", "--secret", s.group(1), "--json",
                           "profile", "set", "moderate", "equity,fund", "100000"], capture_output=True, text=True, timeout=60)
    assert json.loads(prof.stdout)["code"] == "ok", prof.stdout + prof.stderr
    reg = subprocess.run([console, "--port", admin_port, "--gateway", "dev", "--secret", s.group(1), "--json",
                          "gateway", "register", "bk", "bank", "1", "broker", "ETB=9002", "timeout_ms=2000"],
                         capture_output=True, text=True, timeout=60)
    answer = json.loads(reg.stdout)
    assert answer["code"] == "ok", reg.stdout + reg.stderr
    bk_secret = next(sec["rows"][0]["secret_hex"] for sec in answer["sections"] if sec["title"].startswith("credentials"))
    bk = Client("127.0.0.1", port, "bk", bytes.fromhex(bk_secret))
    cbe = dict(etel, id=44, symbol="CBE", lot=1)
    assert pay.instruments([cbe]) == [0]
    assert pay.prices([(44, 100, 1)]) == [0]
    order = dict(id=7001, wallet=301, instrument=44, quantity=10, limit=100, currency="ETB", side=Client.BUY,
                 type=Client.MARKET)
    before = pay.lookup_accounts([301])[0]
    assert pay.orders([order, dict(order, id=7002, quantity=0), dict(order, id=7003, instrument=99)]) == [0, 22, 200]
    ins = bk.order_instructions()
    assert len(ins) == 1 and ins[0]["order_id"] == 7001 and ins[0]["quantity"] == 10 and ins[0]["kind"] == 1, ins
    assert bk.order_answers([dict(order_id=7001, kind=Client.ACCEPTED)]) == [0]  # working it
    assert pay.lookup_orders([7001])[0]["routing"] == 2
    fill = dict(order_id=7001, kind=Client.FILL, fill_id=1, quantity=10, price=99)
    assert bk.order_answers([fill, dict(fill, fill_id=2)]) == [0, 232]  # the second: order_not_open
    o = pay.lookup_orders([7001, 7009])
    assert o[1] is None and o[0]["state"] == 2 and o[0]["filled"] == 10 and o[0]["paid"] == 990, o
    after = pay.lookup_accounts([301])[0]
    assert after["debits_posted"] == before["debits_posted"] + 990 and after["debits_pending"] == before["debits_pending"], after
    # The operators' view of it, and a retry refused (it is no dead letter).
    def ops(*args):
        run = subprocess.run([console, "--port", admin_port, "--gateway", "dev", "--secret", s.group(1), "--json"] +
                             list(args), capture_output=True, text=True, timeout=60)
        return json.loads(run.stdout)
    shown = ops("order", "show", "7001")
    assert shown["code"] == "ok", shown
    row = shown["sections"][0]["rows"][0]
    assert row["state"] == "filled" and row["broker"] == "bk" and row["attempts"] == 1 and row["paid"] == 990, row
    assert ops("order", "retry", "7001")["code"] == "refused"
    assert ops("order", "retry", "7001", "force")["code"] == "refused"  # no dead letter, forced or not
    assert ops("order", "retry", "7001", "now")["code"] == "arguments_invalid"
    assert ops("order", "show", "7999")["code"] == "not_found"
    assert ops("order", "show", "x")["code"] == "arguments_invalid"
    # The position the fill made, to the client and to operators.
    assert pay.lookup_positions([301, 999]) == [[dict(instrument=44, quantity=10, reserved=0, cost=990, buying=0)], None]
    brokers = ops("brokers")
    assert brokers["code"] == "ok" and brokers["sections"][0]["rows"][0]["broker"] == "bk", brokers
    assert brokers["sections"][0]["rows"][0]["sent"] == 1 and brokers["sections"][0]["rows"][0]["phase"] == "closed", brokers
    held = ops("portfolio", "show", "301")
    assert held["code"] == "ok" and held["sections"][0]["rows"][0]["quantity"] == 10, held
    # A cancel: the broker working the order is told, and its reject closes it cancelled.
    before = pay.lookup_accounts([301])[0]
    assert pay.orders([dict(order, id=7004, quantity=1)]) == [0]
    ins = bk.order_instructions()
    assert len(ins) == 1 and ins[0]["order_id"] == 7004 and ins[0]["kind"] == 1, ins
    assert bk.order_answers([dict(order_id=7004, kind=Client.ACCEPTED)]) == [0]
    assert pay.cancel_orders([dict(order_id=7004, wallet=301), dict(order_id=7004, wallet=311),
                              dict(order_id=7999, wallet=301), dict(order_id=7001, wallet=301)]) == [0, 235, 235, 232]
    ins = bk.order_instructions()
    assert len(ins) == 1 and ins[0]["order_id"] == 7004 and ins[0]["kind"] == 2, ins
    assert pay.lookup_orders([7004])[0]["cancelling"] == 4
    assert bk.order_answers([dict(order_id=7004, kind=Client.REJECT, reason=1, attempt=ins[0]["attempt"])]) == [0]
    o = pay.lookup_orders([7004])[0]
    assert o["state"] == 4 and o["filled"] == 0, o
    after = pay.lookup_accounts([301])[0]
    assert after["debits_pending"] == before["debits_pending"] and after["debits_posted"] == before["debits_posted"], after
    # A rebalance: none without a model for the profile; with one, orders toward it.
    assert pay.rebalance(301, 7100, 100, 500) == ([226], [])  # risk_profile_undefined
    assert ops("model", "set", "moderate", "44", "9000")["code"] == "ok"
    # 15 units at 105 would pass tier 1's single limit (1,000): the plan buys 9 (945).
    results, placed = pay.rebalance(301, 7100, 100, 500)
    assert results == [0] and [(o["id"], o["quantity"], o["limit"]) for o in placed] == [(7100, 9, 105)], placed
    assert placed[0]["wallet"] == 301 and placed[0]["instrument"] == 44 and placed[0]["side"] == Client.BUY, placed
    assert pay.lookup_orders([7100])[0]["state"] == 1
    assert pay.rebalance(301, 7200, 100, 500) == ([0], [])  # an order open on 44: left as it is
    bk.close()
    print("trading: orders through a broker: ok")

    # Status changes numbered on their account; transfers, an account's history and its
    # balances as of a time, looked up.
    assert pay.create_accounts([dict(id=401, currency="ETB"), dict(id=402, currency="ETB", user_data=77)]) == [0, 0]
    a = pay.lookup_accounts([402])[0]
    assert a["status"] == Client.OPEN and a["status_seq"] == 0 and a["user_data"] == 77 and a["currency"] == "ETB", a
    freeze = dict(account=402, status=Client.FROZEN, seq=1)
    assert pay.set_account_status([freeze]) == [0]
    assert pay.set_account_status([freeze]) == [0]  # its retry changes nothing
    assert pay.set_account_status([dict(freeze, status=Client.CLOSED)]) == [30]  # exists_with_different_fields
    assert pay.set_account_status([dict(freeze, seq=3)]) == [48]  # status_seq_ahead
    a = pay.lookup_accounts([402])[0]
    assert a["status"] == Client.FROZEN and a["status_seq"] == 1, a
    t1 = dict(id=(1 << 100) + 9601, debit=401, credit=402, amount=300, currency="ETB", user_data=5)
    assert pay.create_transfers([dict(t1, id=9600)]) == [41]  # credit_account_frozen
    assert pay.set_account_status([dict(account=402, status=Client.OPEN, seq=2)]) == [0]
    assert pay.set_account_status([freeze]) == [47]  # status_changed_since
    assert pay.create_transfers([t1, dict(t1, id=9602, amount=200)]) == [0, 0]
    found = pay.lookup_transfers([t1["id"], 9602, 9603])
    assert found[2] is None and found[0]["amount"] == 300 and found[0]["user_data"] == 5, found
    assert found[0]["id"] == t1["id"] and found[0]["debit"] == 401 and found[0]["currency"] == "ETB", found
    assert found[0]["credit_after_credits_posted"] == 300 and found[1]["credit_after_credits_posted"] == 500, found
    assert found[0]["timestamp"] < found[1]["timestamp"], found
    page = pay.account_history([dict(account=402, limit=1), dict(account=402, limit=1, cursor=12345)])
    assert page[0]["result"] == 0 and [r["id"] for r in page[0]["records"]] == [9602] and page[0]["next_cursor"], page
    assert page[1]["result"] == 73 and page[1]["records"] == [], page  # history_cursor_invalid
    older = pay.account_history([dict(account=402, limit=5, cursor=page[0]["next_cursor"])])[0]
    assert [r["id"] for r in older["records"]] == [t1["id"]] and older["next_cursor"] == 0, older
    bal = pay.lookup_balances([(402, found[0]["timestamp"]), (402, found[1]["timestamp"]), (402, 1)])
    assert [(b["result"], b["credits_posted"]) for b in bal] == [(0, 300), (0, 500), (31, 0)], bal  # 31: not made yet
    print("accounts: status changes and look-ups: ok")

    # Events: a named subscriber, filtered on an account, reads what was committed (every
    # event's CRC checked), acknowledges, and resumes after its acknowledgement on a new
    # connection; the stream's frames that come during a call are kept for it.
    from mesob_client import DamagedEvent, EVENT, ProtocolError, crc32c
    import flatbuffers
    from mesob.fb import Events as EventsTable, Event as EventStruct
    assert pay.create_accounts([dict(id=451, currency="ETB"), dict(id=452, currency="ETB")]) == [0, 0]
    ev = Client("127.0.0.1", port, "dev", bytes.fromhex(s.group(1)))
    sub = ev.subscribe(name="py-relay", from_=1, accounts=[452])
    assert sub["result"] == 0 and sub["start"] == 1, sub
    assert pay.create_transfers([dict(id=4510, debit=451, credit=452, amount=700, currency="ETB")]) == [0]

    def read_events(client, n):
        got, last = [], None
        for _ in range(100):
            f = client.next_events(timeout=5.0)
            got += f["events"]
            last = f
            if len(got) >= n:
                return got, last
        raise AssertionError("%d events of %d" % (len(got), n))

    got, frame = read_events(ev, 2)
    assert [(e["type"], e["account_a"]) for e in got[:1]] == [(1, 452)], got  # account_opened
    assert (got[1]["type"], got[1]["account_a"], got[1]["account_b"], got[1]["amount"], got[1]["id_lo"]) == \
        (3, 451, 452, 700, 4510), got[1]  # transfer_posted
    assert got[0]["offset"] < got[1]["offset"] and got[1]["lsn"] > 0, got
    ev.ack(frame["next"] - 1)
    # A call while events come: they wait for next_events, not lost.
    assert ev.create_transfers([dict(id=4511, debit=451, credit=452, amount=800, currency="ETB")]) == [0]
    got, frame = read_events(ev, 1)
    assert (got[0]["type"], got[0]["amount"], got[0]["id_lo"]) == (3, 800, 4511), got
    ev.ack(frame["next"] - 1)
    try:
        ev.ack(frame["next"] + 1000)  # past what was sent: refused
        ev.next_events(timeout=5.0)
        raise AssertionError("an ack past what was sent was taken")
    except ProtocolError as e:
        assert e.code == 19 and "outside what was sent" in e.message, (e.code, e.message)
    ev.close()
    time.sleep(0.3)  # the server takes the acknowledgement within 100 ms and sees the close
    ev = Client("127.0.0.1", port, "dev", bytes.fromhex(s.group(1)))
    again = ev.subscribe(name="py-relay", accounts=[452])
    assert again["result"] == 0 and again["start"] == frame["next"], (again, frame)
    assert pay.create_transfers([dict(id=4512, debit=451, credit=452, amount=900, currency="ETB")]) == [0]
    got, frame = read_events(ev, 1)
    assert (got[0]["amount"], got[0]["id_lo"]) == (900, 4512) and got[0]["offset"] >= again["start"], got
    busy = ev.subscribe(name="other")
    assert busy["result"] != 0 and "subscribed already" in busy["message"], busy
    ev.close()
    # A frame with an event whose bytes fail its CRC is refused whole, naming it.
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C

    def events_body(events):
        b = flatbuffers.Builder(1024)
        EventsTable.StartEventsVector(b, len(events))
        for e in reversed(events):
            EventStruct.CreateEvent(b, *e)
        v = b.EndVector()
        EventsTable.Start(b)
        EventsTable.AddEvents(b, v)
        EventsTable.AddNext(b, events[-1][0] + 1)
        EventsTable.AddEnd(b, events[-1][0] + 1)
        b.Finish(EventsTable.End(b), b"MSB1")
        return bytearray(b.Output())

    def sealed(offset, amount):
        fields = [offset, 9, 10, 3, 0, 0, 4510 + offset, 0, 0, 0, 451, 452, amount, 0, 0, 0]
        fields[-1] = crc32c(EVENT.pack(*fields)[:92])
        return fields

    good = [sealed(40, 700), sealed(41, 800)]
    assert [e["amount"] for e in Client._events(events_body(good))["events"]] == [700, 800]
    bad = [sealed(40, 700), sealed(41, 800)]
    bad[1][12] = 801  # the amount changed, its CRC not
    try:
        Client._events(events_body(bad))
        raise AssertionError("a damaged event was taken")
    except DamagedEvent as e:
        assert e.offset == 41 and "event 41 fails its CRC" in str(e), e
    print("python client: events: ok")

    # The client's own framing and waits.
    import socket
    import struct
    from mesob_client import HEADER
    assert pay.gateway_number == 0 and tb.gateway_number > 0, (pay.gateway_number, tb.gateway_number)
    assert pay.shards == 1 and tb.shards == 1, (pay.shards, tb.shards)  # mesobd --shards 1
    assert pay.frame_bytes_max == 1 << 20, pay.frame_bytes_max
    try:
        tb._await_push("no such topic", 0.2)
        raise AssertionError("a push of no topic came")
    except socket.timeout:
        pass
    assert tb.sock.gettimeout() == 10.0, tb.sock.gettimeout()  # the wait's timeout is not kept
    tb.ping()
    assert tb.deposit([dict(reference=77, wallet=301, amount=5000, currency="ETB")]) == [0]  # the session goes on
    # A frame cut short by a timeout stays whole: the next read goes on from what came.
    near, far = socket.socketpair()
    raw = Client.__new__(Client)
    raw.sock, raw.buf, raw.pushes, raw.pushes_dropped = near, bytearray(), {}, 0
    near.settimeout(0.2)
    frame = HEADER.pack(5, 1, 9, 42) + b"hello"
    far.sendall(frame[:18])
    try:
        raw._read_frame()
        raise AssertionError("half a frame read as a frame")
    except socket.timeout:
        pass
    far.sendall(frame[18:])
    assert raw._read_frame() == (9, 42, bytearray(b"hello"))
    far.sendall(struct.pack("<IHHQ", (64 << 20) + 1, 1, 6, 0))  # past the protocol's ceiling
    try:
        raw._read_frame()
        raise AssertionError("a frame past the ceiling was read")
    except IOError as e:
        assert "framing lost" in str(e), e
    far.close()
    # A call's wait is bounded as a whole: pushes every 50 ms and no answer. Before, each
    # push restarted the socket's timeout and the call waited for ever.
    import threading
    import flatbuffers
    from mesob.fb import Push
    fb = flatbuffers.Builder(64)
    topic = fb.CreateString("payout_instructions")
    Push.Start(fb)
    Push.AddTopic(fb, topic)
    fb.Finish(Push.End(fb), b"MSB1")
    push = bytes(fb.Output())
    near, far = socket.socketpair()
    raw = Client.__new__(Client)
    raw.sock = near
    raw._init_state()
    near.settimeout(0.5)
    stop = threading.Event()
    def pusher():
        while not stop.is_set():
            far.sendall(HEADER.pack(len(push), 1, 7, 0) + push)
            time.sleep(0.05)
    t = threading.Thread(target=pusher, daemon=True)
    t.start()
    began = time.monotonic()
    try:
        raw.create_accounts([dict(id=1, currency="ETB")])
        raise AssertionError("answered by a server that never answers")
    except socket.timeout as e:
        assert "no answer to request 1 within 0.5 s" in str(e), e
    finally:
        stop.set()
        t.join()
    took = time.monotonic() - began
    assert 0.45 <= took < 3, took
    assert len(raw.pushes["payout_instructions"]) >= 5, "the pushes were kept meanwhile"
    far.close()
    near.close()
    # A send that fails part way leaves the stream's framing lost: the client closes the
    # connection and every later call fails at once, naming why. (A peer that reads
    # nothing: about 1.6 MB of transfers fill the socket's buffers.)
    near, far = socket.socketpair()
    raw = Client.__new__(Client)
    raw.sock = near
    raw._init_state()
    near.settimeout(0.3)
    try:
        raw.create_transfers([dict(id=i + 1, debit=1, credit=2, amount=1, currency="ETB") for i in range(8190)])
        raise AssertionError("a send into full buffers went through")
    except socket.timeout:
        pass
    try:
        raw.create_accounts([dict(id=1, currency="ETB")])
        raise AssertionError("a connection whose send failed part way was used again")
    except IOError as e:
        assert "the connection is unusable: a send failed" in str(e), e
    far.close()
    # A wait for a push with no timeout waits past the connection's own (0.3 s here): the
    # push comes after 1 s. Before, it ended at the connection's timeout.
    near, far = socket.socketpair()
    raw = Client.__new__(Client)
    raw.sock = near
    raw._init_state()
    near.settimeout(0.3)
    late = threading.Timer(1.0, lambda: far.sendall(HEADER.pack(len(push), 1, 7, 0) + push))
    late.start()
    began = time.monotonic()
    assert raw._await_push("payout_instructions", None) is not None
    assert time.monotonic() - began >= 0.9
    assert near.gettimeout() == 0.3, near.gettimeout()  # the connection's own timeout as it was
    late.join()
    # A request past the session's frame limit is refused before anything is sent: the
    # connection stays usable. Before, the server answered frame_too_large and closed it.
    raw.frame_bytes_max = 1000
    try:
        raw.create_transfers([dict(id=i + 1, debit=1, credit=2, amount=1, currency="ETB") for i in range(100)])
        raise AssertionError("a request past the frame limit was sent")
    except ValueError as e:
        assert "past the session's limit of 1000" in str(e), e
    assert not raw.broken
    far.setblocking(False)
    try:
        far.recv(1)
        raise AssertionError("bytes of a refused request were sent")
    except BlockingIOError:
        pass
    far.close()
    near.close()
    # A frame trickling in does not keep a wait going past its timeout: the handshake's
    # Hello a byte every 0.2 s against a timeout of 1 s. Before, each receive waited the
    # timeout afresh, and the wait went on as long as bytes came.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    def trickle():
        conn, _ = listener.accept()
        try:
            for byte in HEADER.pack(100, 1, 1, 0) + bytes(100):
                time.sleep(0.2)
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()
    t = threading.Thread(target=trickle)
    t.start()
    began = time.monotonic()
    try:
        Client("127.0.0.1", listener.getsockname()[1], "dev", b"x" * 32, timeout=1.0)
        raise AssertionError("a trickled handshake completed")
    except socket.timeout as e:
        assert "no handshake from the server in time" in str(e), e
    took = time.monotonic() - began
    t.join()
    listener.close()
    assert 0.9 <= took < 2.5, took
    # A frame past the ceiling, or a body that is not a Mesob message, is refused by name
    # (before: a framing loss in a call came out as EBADF from the socket closed under it).
    for bad, want in ((struct.pack("<IHHQ", (64 << 20) + 1, 1, 1, 0), "framing lost"),
                      (HEADER.pack(12, 1, 1, 0) + b"garbage here", "is not a Mesob message")):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        def send_bad():
            conn, _ = listener.accept()
            conn.sendall(bad)
            time.sleep(0.5)
            conn.close()
        t = threading.Thread(target=send_bad)
        t.start()
        try:
            Client("127.0.0.1", listener.getsockname()[1], "dev", b"x" * 32, timeout=5.0)
            raise AssertionError("a bad first frame was taken")
        except IOError as e:
            assert want in str(e) and "Errno 9" not in str(e), e
        t.join()
        listener.close()
    print("python client: framing and waits: ok")
    pay.close()
    tb.close()
    d.send_signal(signal.SIGTERM)
    rest, _ = d.communicate(timeout=60)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, "example.py failed"
    expect = ["accounts [0, 0]", "transfer [0]", "again [0]", "zero amount [22]",
              "account 101 debits 50000 credits 0", "account 102 debits 0 credits 50000", "account None",
              "empty batch refused: 9 request: create_transfers carries no operations",
              "group [0]", "joins [0, 0]", "start [0]", "round 2 0", "wrong round 123", "last payment 0",
              "group 700 phase 3 received [1, 2] escrow 0 group 701 None"]
    for e in expect:
        assert e in r.stdout, "missing %r in:\n%s" % (e, r.stdout)
    assert d.returncode == 0 and "stopped cleanly" in rest, rest
print("python client: ok")
