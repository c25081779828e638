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
try:
    c.create_transfers([])
except ProtocolError as e:
    print("empty batch refused:", e.code, e.message)
c.close()
