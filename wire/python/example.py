"""Opens two wallets, moves 500.00 ETB between them, shows both balances.

    python3 example.py <port> <gateway> <hex secret>
"""
import sys

from mesob_client import Client, ProtocolError

port, gateway, secret = int(sys.argv[1]), sys.argv[2], bytes.fromhex(sys.argv[3])
c = Client("127.0.0.1", port, gateway, secret)
print("session", c.session_id)
print("accounts", c.create_accounts([dict(id=101, currency="ETB"), dict(id=102, currency="ETB")]))
print("transfer", c.create_transfers([dict(id=9001, debit=101, credit=102, amount=50000, currency="ETB")]))
print("again", c.create_transfers([dict(id=9001, debit=101, credit=102, amount=50000, currency="ETB")]))
print("zero amount", c.create_transfers([dict(id=9002, debit=101, credit=102, amount=0, currency="ETB")]))
for a in c.lookup_accounts([101, 102, 103]):
    print("account", a if a is None else "%d debits %d credits %d" % (a["id"], a["debits_posted"], a["credits_posted"]))
# An equb group of two (fee 1%): both join, it starts, round 1 pays out to the first.
print("group", c.equb([dict(kind=Client.CREATE, group=700, currency="ETB", contribution=10000,
                            period_ns=7 * 86400 * 10**9, fee_account=102, fee_bp=100)]))
print("joins", [c.pay_equb(9400 + w, w, 700, 0, 0, 10000, "ETB") for w in (101, 102)])
print("start", c.equb([dict(kind=Client.START, group=700)]))
print("round 2", c.pay_equb(9200, 101, 700, 2, 0, 10000, "ETB"))
print("wrong round", c.pay_equb(9300, 102, 700, 3, 1, 10000, "ETB"))
print("last payment", c.pay_equb(9201, 102, 700, 2, 1, 10000, "ETB"))
import time
for _ in range(500):
    g = c.lookup_groups([700, 701])
    if g[0]["phase"] == 3 and not g[0]["owed"]:
        break
    time.sleep(0.01)
print("group 700 phase %d received %s escrow %d" % (g[0]["phase"], [s["received_round"] for s in g[0]["seats"]],
                                                     g[0]["escrow_expected"]), "group 701", g[1])
try:
    c.create_transfers([])
except ProtocolError as e:
    print("empty batch refused:", e.code, e.message)
c.close()
