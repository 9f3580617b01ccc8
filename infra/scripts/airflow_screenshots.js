#!/usr/bin/env node
// Airflow UI screenshots after `make demo`: <out dir>/airflow-{train-grid,asset-graph,ingest-gate}.png.
// Setup outside the repo: `npm install playwright-core` in a scratch dir; Chromium on PATH or CHROMIUM_PATH.
// Serve: .venv/bin/python infra/scripts/demo_dags.py --ui   (the api-server over the demo's runs, 127.0.0.1:8080;
//        no scheduler) -- or `make stack-up` after a run there.
// Run: NODE_PATH=<scratch>/node_modules node infra/scripts/airflow_screenshots.js <base url> <out dir> \
//        [--passwords runtime/airflow/passwords.json] [--user admin] [--run <recops_train run id; default: newest success>]
'use strict';

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const { chromium } = require('playwright-core');

const WIDTH = 1600;
const HEIGHT = 900;
const TRAIN = 'recops_train';
const INGEST = 'recops_ingest';
const ASSET = 'recops_published_data';

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

/** First of names found on PATH, or undefined (playwright then uses its own downloaded browser). */
function findOnPath(names) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      if (dir && fs.existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

async function call(base, endpoint, token, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${base}${endpoint}`, {
    method: body ? 'POST' : 'GET',
    headers,
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!response.ok) fail(`${endpoint} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** The JWT, the train run to show (default: the newest successful one) and the Asset's id. */
async function lookUp(base, user, password, runId) {
  const { access_token: token } = await call(base, '/auth/token', null, { username: user, password });
  let run = runId;
  if (!run) {
    const query = 'order_by=-run_after&limit=20';
    const { dag_runs: runs } = await call(base, `/api/v2/dags/${TRAIN}/dagRuns?${query}`, token);
    const done = (runs || []).filter((r) => r.state === 'success');
    if (done.length === 0) fail(`no successful ${TRAIN} run: run make demo first`);
    run = done[0].dag_run_id;
  }
  const { task_instances: mapped } = await call(
    base,
    `/api/v2/dags/${TRAIN}/dagRuns/${encodeURIComponent(run)}/taskInstances?task_id=train&limit=100`,
    token,
  );
  const families = (mapped || []).map((ti) => ti.rendered_map_index).filter(Boolean);
  if (families.length === 0) fail(`run ${run} has no mapped train task instances`);
  const ingestQuery = 'order_by=-run_after&limit=20&state=failed';
  const { dag_runs: failed } = await call(base, `/api/v2/dags/${INGEST}/dagRuns?${ingestQuery}`, token);
  const failedIngest = failed && failed.length > 0 ? failed[0].dag_run_id : undefined;
  const { assets } = await call(base, `/api/v2/assets?name_pattern=${ASSET}&limit=10`, token);
  const asset = (assets || []).find((a) => a.name === ASSET);
  if (!asset) fail(`no Asset ${ASSET}`);
  return { token, run, families, assetId: asset.id, failedIngest };
}

/** The run's grid (left) beside the mapped train task's instances, one per family (right). */
async function shootGrid(page, base, found, out) {
  await page.goto(`${base}/dags/${TRAIN}/runs/${encodeURIComponent(found.run)}/tasks/train/mapped`);
  for (const family of found.families) await page.getByText(family, { exact: true }).first().waitFor();
  await page.getByText('Map Index', { exact: true }).first().click(); // sorted by family
  await page.waitForTimeout(1500);
  await page.screenshot({ path: out });
}

/** recops_ingest's grid: the daily runs, the last one failed at the gate (publish, announce never ran). */
async function shootIngest(page, base, found, out) {
  if (!found.failedIngest) return false;
  await page.goto(`${base}/dags/${INGEST}/runs/${encodeURIComponent(found.failedIngest)}`);
  await page.getByText('Upstream Failed').first().waitFor();
  await page.waitForTimeout(1500);
  await page.screenshot({ path: out });
  return true;
}

/** The Asset page: producing DAG -> recops_published_data -> consuming DAG, with its events. */
async function shootAsset(page, base, found, out) {
  await page.goto(`${base}/assets/${found.assetId}`);
  await page.locator('.react-flow__node').first().waitFor();
  await page.getByText('recops_ingest').first().waitFor();
  await page.waitForTimeout(1500);
  await page.screenshot({ path: out });
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      passwords: { type: 'string', default: 'runtime/airflow/passwords.json' },
      user: { type: 'string', default: 'admin' },
      run: { type: 'string' },
    },
  });
  const [base, outDir] = positionals;
  if (!base || !outDir || positionals.length > 2) {
    fail('usage: airflow_screenshots.js <base url> <output dir> [--passwords FILE] [--user U] [--run ID]');
  }
  const baseUrl = base.replace(/\/+$/, '');
  const password = JSON.parse(fs.readFileSync(values.passwords, 'utf-8'))[values.user];
  if (!password) fail(`no password for ${values.user} in ${values.passwords}`);
  fs.mkdirSync(outDir, { recursive: true });
  const found = await lookUp(baseUrl, values.user, password, values.run);
  const browsers = ['chromium', 'chromium-browser', 'google-chrome'];
  const executablePath = process.env.CHROMIUM_PATH || findOnPath(browsers);
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: HEIGHT }, colorScheme: 'light' });
    context.setDefaultTimeout(60000);
    // The UI reads its JWT from the `_token` cookie (what the login page sets).
    await context.addCookies([{ name: '_token', value: found.token, url: baseUrl }]);
    const page = await context.newPage();
    const shots = [
      ['airflow-train-grid.png', (out) => shootGrid(page, baseUrl, found, out)],
      ['airflow-asset-graph.png', (out) => shootAsset(page, baseUrl, found, out)],
      ['airflow-ingest-gate.png', (out) => shootIngest(page, baseUrl, found, out)],
    ];
    for (const [name, shoot] of shots) {
      const out = path.join(outDir, name);
      if ((await shoot(out)) === false) {
        console.log(`${out}: skipped (no failed ${INGEST} run)`);
        continue;
      }
      console.log(`${out} (${fs.statSync(out).size} bytes)`);
    }
  } finally {
    await browser.close();
  }
}

main().catch((err) => fail(err.stack || String(err)));
