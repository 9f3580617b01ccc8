#!/usr/bin/env node
// MLflow UI screenshots after `make demo`: <out dir>/mlflow-{runs,plots,registry}.png.
// Setup outside the repo: `npm install playwright-core` in a scratch dir; Chromium on PATH or CHROMIUM_PATH.
// Serve: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --backend-store-uri sqlite:///runtime/mlflow.db
// Run: NODE_PATH=<scratch>/node_modules node infra/scripts/mlflow_screenshots.js <base url> <out dir> \
//        [--experiment recops] [--model recops-recommender] [--run <pipeline run id; default: the newest>]
'use strict';

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const { chromium } = require('playwright-core');

const WIDTH = 1600;
const METRICS = ['ndcg_at_10', 'recall_at_10', 'coverage_at_10', 'map_at_10', 'novelty_at_10'];
const HIDDEN_ATTRIBUTES = ['Dataset', 'Source', 'Models'];
const PLOT = 'plots/metric_comparison.png';

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

async function api(base, endpoint, body) {
  const url = `${base}/api/2.0/mlflow/${endpoint}`;
  const response = body
    ? await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      })
    : await fetch(url);
  if (!response.ok) fail(`${url} answered ${response.status}: ${await response.text()}`);
  return response.json();
}

/** Finds the pipeline run (default: newest tagged recops.kind=pipeline), children, plot, model aliases. */
async function lookUp(base, experimentName, modelName, runId) {
  const byName = `experiments/get-by-name?experiment_name=${encodeURIComponent(experimentName)}`;
  const { experiment } = await api(base, byName);
  const parents = await api(base, 'runs/search', {
    experiment_ids: [experiment.experiment_id],
    filter: runId ? `attributes.run_id = '${runId}'` : "tags.`recops.kind` = 'pipeline'",
    order_by: ['attributes.start_time DESC'],
    max_results: 1,
  });
  if (!parents.runs || parents.runs.length === 0) {
    fail(`no pipeline run ${runId || ''} in experiment ${experimentName}`);
  }
  const parent = parents.runs[0].info;
  const children = await api(base, 'runs/search', {
    experiment_ids: [experiment.experiment_id],
    filter: `tags.mlflow.parentRunId = '${parent.run_id}'`,
    max_results: 100,
  });
  const childNames = (children.runs || []).map((run) => run.info.run_name);
  if (childNames.length === 0) fail(`pipeline run ${parent.run_id} has no child runs`);
  const plots = await api(base, `artifacts/list?run_id=${parent.run_id}&path=plots`);
  const pngs = (plots.files || []).map((file) => file.path).filter((p) => p.endsWith('.png'));
  if (pngs.length === 0) fail(`pipeline run ${parent.run_id} has no plots/*.png`);
  const modelPath = `registered-models/get?name=${encodeURIComponent(modelName)}`;
  const { registered_model: model } = await api(base, modelPath);
  const aliases = (model.aliases || []).map((entry) => entry.alias);
  return {
    experimentId: experiment.experiment_id,
    parentId: parent.run_id,
    childNames,
    plot: pngs.includes(PLOT) ? PLOT : pngs[0],
    aliases,
  };
}

/** Bottom edge (page pixels) of the lowest element matching selector plus a margin, capped at fallback. */
async function bottomOf(page, selector, margin, fallback) {
  const bottom = await page
    .locator(selector)
    .evaluateAll((els) => Math.max(0, ...els.map((el) => el.getBoundingClientRect().bottom)));
  return Math.min(fallback, bottom > 0 ? Math.ceil(bottom + margin) : fallback);
}

async function shootRuns(page, base, found, out) {
  await page.goto(`${base}/#/experiments/${found.experimentId}/runs?workflowType=machine_learning`);
  const parentLink = page.locator(`a[href$="/runs/${found.parentId}"]`).first();
  await parentLink.waitFor();
  await page.getByRole('button', { name: /Columns/ }).click();
  const search = page.getByPlaceholder('Search columns');
  for (const name of [...HIDDEN_ATTRIBUTES, ...METRICS]) {
    await search.fill(name);
    const title = page
      .getByRole('dialog')
      .locator('[class*="tree-title"]')
      .filter({ hasText: new RegExp(`^${name}$`) });
    if ((await title.count()) > 0) await title.first().click();
  }
  await page.keyboard.press('Escape');
  const row = page.locator('[role=row]', { has: parentLink });
  await row.locator('button[data-component-id*="runnamecellrenderer"]').first().click();
  for (const child of found.childNames) await page.getByText(child, { exact: true }).first().waitFor();
  for (const name of METRICS) {
    // Widen each metric column so its full name shows; grab the resize handle at its left edge.
    const handle = page.locator(`.ag-header-cell[col-id="metrics.\`${name}\`"] .ag-header-cell-resize`);
    const box = (await handle.count()) > 0 ? await handle.boundingBox() : null;
    if (!box) continue;
    await page.mouse.move(box.x + 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + 12, box.y + box.height / 2, { steps: 3 });
    await page.mouse.move(box.x + 32, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
  }
  await page.mouse.move(0, 0);
  await page.waitForTimeout(1000);
  const height = await bottomOf(page, '.ag-center-cols-container [role=row]', 40, page.viewportSize().height);
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: WIDTH, height } });
}

async function shootPlot(page, base, found, out) {
  const runPage = `${base}/#/experiments/${found.experimentId}/runs/${found.parentId}`;
  await page.goto(`${runPage}/artifacts/${found.plot}`);
  const selector = `img[alt="${found.plot}"]`;
  await page.locator(selector).first().waitFor();
  await page.waitForFunction((sel) => {
    const img = document.querySelector(sel);
    return img !== null && img.complete && img.naturalWidth > 0;
  }, selector);
  // The artifact's storage path belongs to the machine that ran the demo: keep it out of the picture.
  await page
    .getByText(/^Path:/)
    .evaluateAll((els) => els.forEach((el) => (el.parentElement || el).style.setProperty('display', 'none')));
  await page.waitForTimeout(500);
  const height = await bottomOf(page, selector, 40, page.viewportSize().height);
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: WIDTH, height } });
}

async function shootRegistry(page, base, modelName, found, out) {
  await page.goto(`${base}/#/models/${encodeURIComponent(modelName)}`);
  await page.getByText(/^Version \d+$/).first().waitFor();
  for (const alias of found.aliases) await page.getByText(`@ ${alias}`).first().waitFor();
  await page.waitForTimeout(1000);
  const height = await bottomOf(page, 'tbody tr, [role=row]', 80, page.viewportSize().height);
  await page.screenshot({ path: out, clip: { x: 0, y: 0, width: WIDTH, height } });
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      experiment: { type: 'string', default: 'recops' },
      model: { type: 'string', default: 'recops-recommender' },
      run: { type: 'string' },
    },
  });
  const [base, outDir] = positionals;
  if (!base || !outDir || positionals.length > 2) {
    fail('usage: mlflow_screenshots.js <base url> <output dir> [--experiment X] [--model Y] [--run ID]');
  }
  const { experiment: experimentName, model: modelName, run: runId } = values;
  const baseUrl = base.replace(/\/+$/, '');
  fs.mkdirSync(outDir, { recursive: true });
  const found = await lookUp(baseUrl, experimentName, modelName, runId);
  const browsers = ['chromium', 'chromium-browser', 'google-chrome'];
  const executablePath = process.env.CHROMIUM_PATH || findOnPath(browsers);
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: 1000 } });
    context.setDefaultTimeout(60000);
    await context.addInitScript(() => {
      // Model-training view, no assistant side panel, no first-visit hints.
      localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
      localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
      localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
      localStorage.setItem('mlflow.detectIssues.guidanceShown_v1', 'true');
    });
    const page = await context.newPage();
    const shots = [
      ['mlflow-runs.png', (out) => shootRuns(page, baseUrl, found, out)],
      ['mlflow-plots.png', (out) => shootPlot(page, baseUrl, found, out)],
      ['mlflow-registry.png', (out) => shootRegistry(page, baseUrl, modelName, found, out)],
    ];
    for (const [name, shoot] of shots) {
      const out = path.join(outDir, name);
      await shoot(out);
      console.log(`${out} (${fs.statSync(out).size} bytes)`);
    }
  } finally {
    await browser.close();
  }
}

main().catch((err) => fail(err.stack || String(err)));
