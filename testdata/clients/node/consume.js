#!/usr/bin/env node
// An independent StreamCDP consumer in Node: kafkajs reads a topic with
// read_committed isolation (only committed transactions, as StreamCDP's
// processors write them) and @kafkajs/confluent-schema-registry decodes
// each value with the writer schema the registry holds for its id.
//
//   node consume.js --brokers 127.0.0.1:9092 --registry http://127.0.0.1:8081 \
//     --topic cdp.segments.membership --count 100
//
// It prints one JSON line per record ({key, partition, offset, value}) and a
// last line {"count": N}; logs go to stderr. kafkajs reads gzip out of the
// box; for the processors' other codecs (CDP_KAFKA_COMPRESSION snappy, lz4,
// zstd) add the matching codec package, e.g. kafkajs-snappy. See README.md.
'use strict';

const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const { Kafka, logLevel } = require('kafkajs');
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry');

function usage(msg) {
  if (msg) process.stderr.write(`consume.js: ${msg}\n`);
  process.stderr.write('usage: node consume.js --brokers HOST:PORT[,...] --registry URL --topic TOPIC --count N [--timeout SECONDS]\n');
  process.exit(2);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        brokers: { type: 'string' },
        registry: { type: 'string' },
        topic: { type: 'string' },
        count: { type: 'string' },
        timeout: { type: 'string', default: '60' },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  for (const k of ['brokers', 'registry', 'topic', 'count']) {
    if (!values[k]) usage(`--${k} is required`);
  }
  return {
    brokers: values.brokers.split(',').map((s) => s.trim()).filter(Boolean),
    registry: values.registry,
    topic: values.topic,
    count: Number(values.count),
    timeout: Number(values.timeout) * 1000,
  };
}

// JSON.stringify cannot write BigInt (avsc reads Avro longs beyond 2^53 as
// them) or Buffers as text.
function replacer(_key, v) {
  if (typeof v === 'bigint') return v.toString();
  return v;
}

async function main() {
  const opts = options();
  const kafka = new Kafka({ clientId: 'streamcdp-node-consumer', brokers: opts.brokers, logLevel: logLevel.WARN });
  const registry = new SchemaRegistry({ host: opts.registry });
  const consumer = kafka.consumer({ groupId: `streamcdp-node-consumer-${crypto.randomUUID()}`, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
  let seen = 0;
  let failed = null;
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, opts.timeout);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        try {
          const value = await registry.decode(message.value);
          process.stdout.write(JSON.stringify({
            key: message.key ? message.key.toString() : null, partition, offset: message.offset, value,
          }, replacer) + '\n');
        } catch (err) {
          failed = failed || err;
        }
        seen += 1;
        if (seen >= opts.count) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch((err) => { failed = failed || err; clearTimeout(timer); resolve(); });
  });
  await done;
  await consumer.disconnect();
  process.stdout.write(JSON.stringify({ count: seen }) + '\n');
  if (failed) {
    process.stderr.write(`consume.js: ${failed.stack || failed}\n`);
    process.exit(1);
  }
}

main().catch((err) => {
  process.stderr.write(`consume.js: ${err.stack || err}\n`);
  process.exit(1);
});
