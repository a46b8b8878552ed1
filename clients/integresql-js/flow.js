// IntegreSQL's JavaScript client (@devoxa/integresql-client, unchanged) against testpool: a
// daemon is started from $TESTPOOL_BIN with --integresql-listen; 10 workers initialise the same
// hash at once (exactly one migrates, the others get 423 and go on), then each takes 10 test
// databases in a row, checks that each holds the template's rows and nothing else, writes to it,
// and gives it back by reuse (DELETE …/tests/{id}), recreate (POST …/recreate), or not at all (the
// daemon takes it back once no session is connected). Exits non-zero on the first failure.
'use strict';
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { IntegreSQLClient } = require('@devoxa/integresql-client');
const { Client } = require('pg');

const WORKERS = 10;
const PER_WORKER = 10;

function startDaemon() {
  const state = fs.mkdtempSync(path.join(os.tmpdir(), 'testpool-isql-js-'));
  fs.chmodSync(state, 0o755);  // the local backend's postgres user must reach it
  const daemon = spawn(process.env.TESTPOOL_BIN,
                       ['serve', '--state-dir', state, '--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0',
                        '--integresql-listen', '127.0.0.1:0', '--integresql-idle', '2'],
                       { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = new Promise((resolve, reject) => {
    daemon.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /integresql_listening .*url=(http:\/\/[0-9.]+:[0-9]+)/.exec(log);
      if (m) resolve(m[1] + '/');
    });
    daemon.on('exit', (code) => reject(new Error(`daemon exited (${code}) before listening:\n${log}`)));
  });
  return { daemon, state, url, log: () => log };
}

async function query(config, sql) {
  const c = new Client({ host: config.host, port: config.port, user: config.username, password: config.password,
                         database: config.database });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

async function worker(url, hash, n, counts) {
  const client = new IntegreSQLClient({ url });
  await client.initializeTemplate(hash, async (config) => {
    counts.migrated += 1;
    await query(config, "CREATE TABLE stock (sku text PRIMARY KEY, left_ integer NOT NULL); " +
                        "INSERT INTO stock VALUES ('last-item', 1)");
  });
  for (let i = 0; i < PER_WORKER; i++) {
    // The API client gives the id the reuse and recreate calls need.
    const test = await client.api.getTestDatabase(hash);
    const config = test.database.config;
    const rows = await query(config, 'SELECT sku, left_ FROM stock ORDER BY sku');
    assert.deepEqual(rows, [{ sku: 'last-item', left_: 1 }], `worker ${n} database ${config.database}: not fresh`);
    // Two tests buying the last item: each in a database of its own, each succeeds.
    const bought = await query(config, "UPDATE stock SET left_ = left_ - 1 WHERE sku = 'last-item' AND left_ > 0 RETURNING sku");
    assert.equal(bought.length, 1);
    counts.databases += 1;
    if (i % 3 === 0) await client.api.reuseTestDatabase(hash, test.id);
    else if (i % 3 === 1) await client.api.recreateTestDatabase(hash, test.id);
    // else: never given back; the daemon takes it back
  }
}

async function main() {
  const { daemon, state, url, log } = startDaemon();
  try {
    const base = await url;
    const hash = 'js-' + Date.now().toString(36) + Math.random().toString(36).slice(2);
    const counts = { migrated: 0, databases: 0 };
    await Promise.all(Array.from({ length: WORKERS }, (_, n) => worker(base, hash, n, counts)));
    assert.equal(counts.migrated, 1, 'exactly one worker migrates');
    assert.equal(counts.databases, WORKERS * PER_WORKER);
    await new IntegreSQLClient({ url: base }).api.discardAllTemplates();
    console.log(`ok: ${WORKERS} workers, ${counts.databases} test databases, 1 migration`);
  } catch (e) {
    console.error(log());
    throw e;
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.on('exit', resolve));
    fs.rmSync(state, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
