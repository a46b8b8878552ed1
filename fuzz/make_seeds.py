#!/usr/bin/env python3
"""Writes fuzz/corpus/<target>/ seed files: real start-up packets and protocol messages, real SCRAM
exchanges (computed here with the fixed password, salt and nonces of scram_fuzz.cc), SQL as
migrations and clients write it, real API request bodies, real connection strings.

Run from anywhere: python3 fuzz/make_seeds.py. It rewrites the seeds it knows and leaves others
(such as inputs that once crashed a target, kept as regressions) alone. The fuzzers' own
discoveries never go here: scripts/fuzz.sh runs each target over a copy under build-fuzz/.
"""
import base64
import hashlib
import hmac
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- codec: the first byte is the options (bit 0: a client's stream; bits 1-3: read sizes) ------

def msg(t, body=b""):
    return t.encode() + struct.pack(">i", len(body) + 4) + body


def untyped(body):
    return struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(params, protocol=196608):
    body = struct.pack(">i", protocol)
    for k, v in params:
        body += cstr(k) + cstr(v)
    return untyped(body + b"\0")


LOGIN = [("user", "tp_r_7_1"), ("database", "tp_s_0123456789ab_7"), ("application_name", "psql"),
         ("client_encoding", "UTF8"), ("options", "-c search_path=app --statement-timeout=5s")]
sasl_init = msg("p", cstr("SCRAM-SHA-256") + struct.pack(">i", 32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO%hvY")
sasl_resp = msg("p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYfuzzServerNonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")

write("codec", "client-login-query", b"\x01" + startup(LOGIN) + sasl_init + sasl_resp +
      msg("Q", cstr("BEGIN; INSERT INTO t VALUES (1); COMMIT;")) + msg("X"))
write("codec", "client-ssl-then-extended", b"\x03" + untyped(struct.pack(">i", 80877103)) + startup(LOGIN[:2]) +
      msg("P", cstr("s1") + cstr("SELECT $1::int") + struct.pack(">hi", 1, 23)) +
      msg("B", cstr("") + cstr("s1") + struct.pack(">hhhi", 1, 0, 1, 2) + b"42" + struct.pack(">h", 0)) +
      msg("D", b"P" + cstr("")) + msg("E", cstr("") + struct.pack(">i", 0)) + msg("S") +
      msg("C", b"S" + cstr("s1")) + msg("H") + msg("S"))
write("codec", "client-cancel", b"\x05" + untyped(struct.pack(">iii", 80877102, 1234, 0x5eed)))
write("codec", "client-gss-protocol-3.2", b"\x07" + untyped(struct.pack(">i", 80877104)) +
      startup(LOGIN[:2] + [("_pq_.compression", "on")], protocol=196610))
write("codec", "client-protocol-2", b"\x09" + untyped(struct.pack(">i", 131072) + b"user\0x\0\0"))
write("codec", "client-copy-in", b"\x0b" + startup(LOGIN[:2]) + msg("Q", cstr("COPY t (a, b) FROM STDIN")) +
      msg("d", b"1\tone\n2\ttwo\n") + msg("c") + msg("Q", cstr("COPY t FROM STDIN")) + msg("f", cstr("aborted")))
write("codec", "client-bad-length", b"\x01" + startup(LOGIN[:2]) + b"Q\x00\x00\x00\x03")

fields = lambda pairs: b"".join(c.encode() + cstr(v) for c, v in pairs) + b"\0"
write("codec", "server-login-and-replies", b"\x00" +
      msg("R", struct.pack(">i", 10) + cstr("SCRAM-SHA-256") + b"\0") +
      msg("R", struct.pack(">i", 11) + b"r=abc,s=QSXCR+Q6sek8bf92,i=4096") +
      msg("R", struct.pack(">i", 12) + b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") +
      msg("R", struct.pack(">i", 0)) + msg("S", cstr("server_version") + cstr("15.5")) +
      msg("S", cstr("TimeZone") + cstr("UTC")) + msg("K", struct.pack(">ii", 4242, -77)) + msg("Z", b"I") +
      msg("C", cstr("INSERT 0 1")) + msg("D", struct.pack(">hi", 2, 1) + b"7" + struct.pack(">i", -1)) +
      msg("E", fields([("S", "ERROR"), ("V", "ERROR"), ("C", "25P02"), ("M", "current transaction is aborted")])) +
      msg("N", fields([("S", "WARNING"), ("C", "01000"), ("M", "note")])) + msg("Z", b"E") + msg("Z", b"T"))
write("codec", "server-md5", b"\x02" + msg("R", struct.pack(">i", 5) + b"\x01\x02\x03\x04"))

# ---- scram: a mode byte, then "A\nB" (see scram_fuzz.cc) -----------------------------------------

PASSWORD, SALT, ITERATIONS = b"fuzz-password", b"0123456789abcdef", 16
SERVER_NONCE, CLIENT_NONCE = "fuzzServerNonceAAAAAAAAA", "fuzzClientNonceBBBBBBBBB"


def keys(salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return client_key, hashlib.sha256(client_key).digest(), hmac.new(salted, b"Server Key", "sha256").digest()


def b64(b):
    return base64.b64encode(b).decode()


def client_final(client_first, salt, iterations, extensions=""):
    client_key, stored_key, _ = keys(salt, iterations)
    gs2, bare = client_first[:3], client_first[3:]
    nonce = bare.split("r=", 1)[1].split(",")[0] + SERVER_NONCE
    server_first = f"r={nonce},s={b64(salt)},i={iterations}"
    without_proof = f"c={b64(gs2.encode())},r={nonce}" + (("," + extensions) if extensions else "")
    auth = f"{bare},{server_first},{without_proof}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, hmac.new(stored_key, auth, "sha256").digest()))
    return without_proof + ",p=" + b64(proof)


first = "n,,n=,r=rOprNGfwEbeRWgbNEkqO"
write("scram", "server-accepts", "s" + first + "\n" + client_final(first, SALT, ITERATIONS))
write("scram", "server-wrong-proof", "s" + first + "\n" + client_final(first, SALT, ITERATIONS)[:-8] + "AAAAAAA=")
write("scram", "server-y-header-extension", "s" + "y,,n=user,r=abc,x=ext" + "\n" +
      client_final("y,,n=user,r=abc,x=ext", SALT, ITERATIONS, "q=opt"))
write("scram", "server-channel-binding", "sp=tls-server-end-point,,n=,r=abc\nc=cD10bHMt,r=abc,p=AAAA")
write("scram", "server-authzid", "sn,a=admin,n=,r=abc\n")
write("scram", "server-mandatory-extension", "sn,,m=ext,n=,r=abc\n")
write("scram", "honest-client", "h" + first + "\n")
write("scram", "honest-client-extensions", "h" + "n,,n=,r=xyz,e=1" + "\nz=2,p=AAAA")
server_first = f"r={CLIENT_NONCE}srvNonce,s={b64(b'QSXCR+Q6sek8bf92')},i=4096"
write("scram", "client-honest-server", "c" + server_first + "\n")
write("scram", "client-refused", "c" + server_first + "\ne=invalid-proof")
write("scram", "client-bad-signature", "c" + server_first + "\nv=" + b64(b"x" * 32))
write("scram", "client-mandatory-extension", "cm=ext," + server_first + "\n")
_, stored, server = keys(SALT, 4096)
write("scram", "verifier", f"vSCRAM-SHA-256$4096:{b64(SALT)}${b64(stored)}:{b64(server)}")
write("scram", "verifier-md5", "vmd5" + "0" * 32)

# ---- SQL: sql_classify (a client's Query or Parse) and sql_script (migrations) ------------------

CLIENT_SQL = {
    "begin-modes": "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE;",
    "start-transaction": "START TRANSACTION READ WRITE NOT DEFERRABLE ISOLATION LEVEL READ COMMITTED",
    "commit-chain": "COMMIT AND CHAIN; END WORK; ROLLBACK AND NO CHAIN; ABORT TRANSACTION",
    "savepoints": 'SAVEPOINT "My Sp""x"; RELEASE SAVEPOINT sp1; ROLLBACK WORK TO SAVEPOINT sp1; RELEASE savepoint',
    "unicode-savepoint": 'SAVEPOINT U&"d\\0061t\\+000061"; ROLLBACK TO U&"\\D83D\\DE00"',
    "two-phase": "PREPARE TRANSACTION 'gid-1'; COMMIT PREPARED 'gid-1'; ROLLBACK PREPARED $$g$$",
    "not-in-block": "VACUUM (ANALYZE) t; CLUSTER VERBOSE; REINDEX (CONCURRENTLY true) TABLE t; "
                    "REINDEX SCHEMA s; CREATE UNIQUE INDEX CONCURRENTLY i ON t (a); DROP INDEX CONCURRENTLY i; "
                    "DISCARD ALL; ALTER SYSTEM SET work_mem = '64MB'; CREATE DATABASE d; DROP TABLESPACE ts",
    "subscriptions": "CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p WITH (create_slot = false, "
                     "connect = 'on'); ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = 0); "
                     "ALTER SUBSCRIPTION s REFRESH PUBLICATION; DROP SUBSCRIPTION s",
    "alter-database-table": "ALTER DATABASE d SET TABLESPACE ts; ALTER DATABASE d WITH TABLESPACE = ts; "
                            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
    "strings": "SELECT E'it\\'s\\n', U&'d\\0061t', 'a'\n  'b', B'101', X'ff', N'x', $q$ BEGIN; $q$, \"BEGIN\"",
    "comments-operators": "/* nested /* comment */ */ SELECT $1::int <= 2 AND a !~ 'x' -- end\n, .5e3, 1abc, a$b$",
    "copy": "COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true);\r\nCOPY (SELECT 1) TO STDOUT",
    "unterminated": "BEGIN; SELECT 'abc",
    "uescape": "SAVEPOINT U&\"!0061\" UESCAPE '!'",
}
for name, sql in CLIENT_SQL.items():
    write("sql_classify", name, sql)

SCRIPTS = {
    "no-transaction": "-- testpool:no-transaction\n/* builds online */\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
                      "VACUUM ANALYZE t;\n",
    "sql-function-body": "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 "
                         "THEN 1 ELSE 0 END;\n  SELECT a;\nEND;\nCREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC "
                         "INSERT INTO t VALUES (1); END;\nSELECT 1;",
    "plpgsql-dollar": "CREATE FUNCTION g() RETURNS trigger AS $body$\nBEGIN\n  RAISE NOTICE 'x;';\n  RETURN NEW;\n"
                      "END $body$ LANGUAGE plpgsql;\nDO $$ BEGIN PERFORM 1; END $$;\n",
    "meta-command": "SELECT 1;\n\\connect other\nSELECT 2;\n",
    "unterminated-dollar": "SELECT 1;\nCREATE FUNCTION h() RETURNS int AS $f$\nSELECT 1;\n",
    "crlf-strings": "INSERT INTO t VALUES ('a;b', E'c\\';d');\r\nSELECT \"x;y\" FROM t; ;;\r\n-- trailing\r\n",
    "copy-and-parens": "COPY t (a) FROM STDIN;\nSELECT (1; 2);\nCREATE TABLE x (a int CHECK (a > 0));",
}
for name, sql in SCRIPTS.items():
    write("sql_script", name, sql)
with open(os.path.join(ROOT, "..", "..", "migrations", "0003_orders.sql"), "rb") as f:
    write("sql_script", "migration-0003_orders.sql", f.read())
for name in ("savepoints", "strings", "comments-operators", "copy"):
    write("sql_script", "client-" + name, CLIENT_SQL[name])

# ---- request bodies: the route's byte, then the body (see request_body_fuzz.cc) -----------------

BODIES = {
    "template": 't{"migrations":[{"name":"0001_init.sql","sql":"CREATE TABLE t (id int);"}],'
                '"seed":[{"name":"seed.sql","sql":"INSERT INTO t VALUES (1);"}],"pool":{"min_ready":2,"max":10},'
                '"recycle":"rollback","description":"demo","name":"fuzzname"}',
    "template-bad-number": 't{"migrations":[{"name":"1_a.sql","sql":""}],"pool":{"max":1e3}}',
    "lease": 'l{"ttl_s":600,"wait_s":30,"holder":"worker-1"}',
    "lease-empty": "l",
    "lease-huge-ttl": 'l{"ttl_s":18446744073709551615,"wait_s":-9223372036854775808}',
    "renew": 'r{"ttl_s":120}',
    "reset": "x{}",
    "reset-to": 'x{"to":"module_orders.2"}',
    "checkpoint": 'k{"name":"golden:1"}',
    "record-pool": 'p{"dsn":"postgresql://u:p@localhost/app","table":"test_users","key":"user_id","schema":"public",'
                   '"match":{"profile_type":"premium","active":true,"tier":2,"score":1.5}}',
    "record-pool-lease": 'p{"lease":"abc234","table":"t","key":"id","name":"fuzzname"}',
    "claim": 'c{"match":{"tier":"gold"},"ttl_s":300,"wait_s":5,"holder":"h","lease":"abc"}',
    "claim-renew": 'n{"ttl_s":60}',
    "build": 'b{"recipe":"payment","count":1000,"seed":42,"overrides":{"currency":"EUR","amount":1.5},'
             '"namespace":"ns-1"}',
    "build-dsn": 'd{"recipe":"order","dsn":"host=/tmp dbname=app","namespace":"ns_2","lease":"abc","count":3}',
    "unknown-field": 'l{"ttl":5,"\\u00e9t\\u00e9":[1,{"a":null}]}',
}
for name, body in BODIES.items():
    write("request_body", name, body)

# ---- conninfo -------------------------------------------------------------------------------------

DSNS = {
    "keyword": "host=localhost port=5432 dbname=app user=bob password=secret",
    "keyword-quoted": "host=db1,db2 port=5432,5433 target_session_attrs=read-write dbname='my db' "
                      "password='a b\\'c\\\\d' options='-c search_path=x'",
    "uri": "postgresql://u:p%40ss@127.0.0.1:5432/db?sslmode=disable&application_name=x",
    "uri-ipv6": "postgresql://u@[::1]:5433/d",
    "uri-socket": "postgresql:///app?host=%2Fvar%2Frun%2Fpostgresql&port=5433",
    "uri-multi-host": "postgres://user@host1:1,host2:2/db?connect_timeout=10",
    "empty-values": "dbname=app user='' host=''",
}
for name, dsn in DSNS.items():
    write("conninfo", name, dsn)
