#!/usr/bin/env node
// A TypeScript SDK client against the policy test server through mcpgate
// with the e2e guest policy: what it lists, what it may call, what comes
// back redacted.
//
// Usage: node policy.mjs URL
//
// Prints one JSON line: {"ok": bool, "steps": [{"name", "ok", "detail"}]}
// and exits 0 when every step passed. The SDK is resolved like client.mjs
// does (MCPGATE_NODE_ROOT, or tools/node of this repository).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.MCPGATE_NODE_ROOT || path.resolve(here, '..', '..', '..', 'tools', 'node');
const requireFromRoot = createRequire(path.join(nodeRoot, 'package.json'));
const { Client } = requireFromRoot('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = requireFromRoot('@modelcontextprotocol/sdk/client/streamableHttp.js');

const url = process.argv[2];
const report = { ok: false, steps: [] };

async function step(name, fn) {
    try {
        const detail = await fn();
        report.steps.push({ name, ok: true, detail: String(detail ?? '') });
    } catch (err) {
        report.steps.push({ name, ok: false, detail: String(err && err.message || err) });
    }
}

function text(result) {
    return (result.content || []).filter(c => c.type === 'text').map(c => c.text).join('');
}

function expect(cond, what) {
    if (!cond) throw new Error(what);
}

const watchdog = setTimeout(() => { finish(); }, 60000);
const client = new Client({ name: 'ts-policy-client', version: '1.0.0' }, { capabilities: {} });

try {
    await client.connect(new StreamableHTTPClientTransport(new URL(url)));
    await step('tools/list, every page, denied tools gone', async () => {
        const names = [];
        let cursor;
        do {
            const page = await client.listTools(cursor ? { cursor } : {});
            names.push(...page.tools.map(t => t.name));
            cursor = page.nextCursor;
        } while (cursor);
        names.sort();
        expect(JSON.stringify(names) === JSON.stringify(['dump_key', 'get_item', 'leak', 'notify', 'query', 'search_docs']), 'tools ' + names);
        return names.join(',');
    });
    await step('a denied tool is a tool error naming the policy', async () => {
        const r = await client.callTool({ name: 'delete_repo', arguments: {} });
        expect(r.isError && text(r).includes('guests-read-only'), JSON.stringify(r));
    });
    await step('a CEL rule refuses', async () => {
        const r = await client.callTool({ name: 'query', arguments: { sql: 'DELETE FROM t' } });
        expect(r.isError && text(r).includes('only SELECT queries are allowed'), JSON.stringify(r));
    });
    await step('invalid arguments are a readable tool error', async () => {
        const r = await client.callTool({ name: 'query', arguments: { sql: 'SELECT 1', limit: 1000 } });
        expect(r.isError && text(r).includes('argument /limit') && text(r).includes('/properties/limit/maximum'), text(r));
    });
    await step('results are redacted', async () => {
        const r = await client.callTool({ name: 'leak', arguments: {} });
        const t = text(r);
        expect(!r.isError && !t.includes('AKIAIOSFODNN7EXAMPLE') && t.includes('[REDACTED:aws-access-key]') && t.includes('[REDACTED:jwt]'), t);
    });
    await step('a private key result is withheld', async () => {
        const r = await client.callTool({ name: 'dump_key', arguments: {} });
        expect(r.isError && !text(r).includes('MIIE'), text(r));
    });
    await step('a denied resource is a JSON-RPC error', async () => {
        try {
            await client.readResource({ uri: 'file:///srv/private/keys.txt' });
        } catch (err) {
            expect(String(err.message).includes('guests-read-only'), err.message);
            return err.message;
        }
        throw new Error('read succeeded');
    });
    report.ok = report.steps.every(s => s.ok);
} catch (err) {
    report.steps.push({ name: 'connect', ok: false, detail: String(err && err.message || err) });
}
finish();

function finish() {
    clearTimeout(watchdog);
    console.log(JSON.stringify(report));
    client.close().catch(() => {});
    process.exit(report.ok ? 0 : 1);
}
