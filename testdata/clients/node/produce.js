#!/usr/bin/env node
// An independent StreamCDP producer in Node. It knows nothing of StreamCDP's
// Go code: it reads the published Avro schema (schemas/event.avsc), registers
// it in the schema registry under "<topic>-value" (the topic-name strategy
// every Confluent client uses), encodes events in the Confluent wire format
// (magic byte 0, 4-byte schema id, Avro binary) with
// @kafkajs/confluent-schema-registry (avsc inside) and produces them with
// kafkajs.
//
//   node produce.js --brokers 127.0.0.1:9092 --registry http://127.0.0.1:8081 \
//     --topic cdp.events.raw --schema ../../../schemas/event.avsc
//
// It sends a fixed set of events (identify, track "Order Completed", page,
// screen, alias, group) and prints one JSON summary on stdout; logs go to
// stderr. See README.md.
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const { Kafka, Partitioners, CompressionTypes, logLevel } = require('kafkajs');
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');

const LIBRARY = { name: 'streamcdp-node-example', version: require('./package.json').version };

function usage(msg) {
  if (msg) process.stderr.write(`produce.js: ${msg}\n`);
  process.stderr.write(
    'usage: node produce.js --brokers HOST:PORT[,HOST:PORT] --registry URL --topic TOPIC --schema PATH/event.avsc\n');
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
        schema: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    usage(err.message);
  }
  if (values.help) usage();
  for (const k of ['brokers', 'registry', 'topic', 'schema']) {
    if (!values[k]) usage(`--${k} is required`);
  }
  return {
    brokers: values.brokers.split(',').map((s) => s.trim()).filter(Boolean),
    registry: values.registry,
    topic: values.topic,
    schema: values.schema,
  };
}

// Free-form values (traits, properties, context.traits, context.extra,
// products[].extra) are Avro map<string,string> whose values are JSON texts:
// JSON-encode every value, strings included ("Mug" becomes "\"Mug\"").
function jsonMap(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) out[k] = JSON.stringify(v);
  return out;
}

// The fixed events, as plain objects in avsc's representation of
// event.avsc: a union ["null", T] is either null (or left out: every
// optional field defaults to null) or a bare T value; the enum "type" is its
// symbol; timestamp-millis fields are numbers of milliseconds since the epoch.
function buildEvents(now) {
  const sentAt = now;
  const ts = (secondsAgo) => now - secondsAgo * 1000; // device clock at the action
  const id = () => crypto.randomUUID();
  const library = LIBRARY;

  return [
    {
      message_id: id(),
      type: 'identify',
      user_id: 'node-user-1',
      anonymous_id: 'node-anon-1',
      original_timestamp: ts(60),
      sent_at: sentAt,
      context: {
        ip: '203.0.113.7',
        locale: 'de-DE',
        device: { id: 'node-device-1', type: 'ios' },
        library,
      },
      traits: jsonMap({
        email: 'ada@example.com',
        name: 'Ada Lovelace',
        plan: 'premium',
        logins: 42,
        address: { city: 'Berlin', country: 'DE' },
      }),
    },
    {
      message_id: id(),
      type: 'track',
      event: 'Order Completed',
      user_id: 'node-user-1',
      anonymous_id: 'node-anon-1',
      original_timestamp: ts(50),
      sent_at: sentAt,
      context: { library },
      properties: jsonMap({ affiliation: 'Node Store', gift_wrap: true }),
      commerce: {
        order_id: 'node-order-1001',
        checkout_id: 'node-checkout-77',
        revenue: 59.9,
        total: 64.89,
        shipping: 4.99,
        tax: 9.56,
        discount: 2.5,
        coupon: 'WELCOME5',
        currency: 'EUR',
        products: [
          {
            product_id: 'sku-mug-01',
            sku: 'MUG-01',
            name: 'Mug',
            category: 'Kitchen',
            brand: 'Acme',
            price: 12.5,
            quantity: 2,
            extra: jsonMap({ color: 'blue' }),
          },
          {
            product_id: 'sku-tee-02',
            sku: 'TEE-02',
            name: 'T-Shirt "Kafka"',
            category: 'Apparel',
            variant: 'L',
            price: 34.9,
            quantity: 1,
          },
        ],
      },
    },
    {
      message_id: id(),
      type: 'page',
      anonymous_id: 'node-anon-2',
      name: 'Pricing',
      original_timestamp: ts(40),
      sent_at: sentAt,
      context: {
        ip: '198.51.100.23',
        user_agent: 'Mozilla/5.0 (X11; Linux x86_64) StreamCDP-Node-Example',
        locale: 'en-US',
        page: {
          url: 'https://shop.example.com/pricing?utm_source=newsletter',
          path: '/pricing',
          referrer: 'https://mail.example.org/',
          title: 'Pricing - Example Shop',
        },
        campaign: {
          source: 'newsletter',
          medium: 'email',
          name: 'spring_sale',
          term: 'mugs',
          content: 'hero-banner',
        },
        library,
        extra: jsonMap({ timezone: 'Europe/Berlin', screen: { width: 1920, height: 1080 } }),
      },
      properties: jsonMap({ section: 'plans' }),
    },
    {
      message_id: id(),
      type: 'screen',
      anonymous_id: 'node-anon-3',
      name: 'Product Detail',
      original_timestamp: ts(30),
      sent_at: sentAt,
      context: {
        device: { id: 'node-device-3', type: 'android' },
        app: { name: 'Example Shop', version: '3.2.1', build: '321' },
        library,
      },
      properties: jsonMap({ product_id: 'sku-mug-01' }),
    },
    {
      message_id: id(),
      type: 'alias',
      user_id: 'node-user-1',
      previous_id: 'node-anon-2',
      original_timestamp: ts(20),
      sent_at: sentAt,
      context: { library },
    },
    {
      message_id: id(),
      type: 'group',
      user_id: 'node-user-1',
      group_id: 'node-company-9',
      original_timestamp: ts(10),
      sent_at: sentAt,
      context: { library },
      traits: jsonMap({ name: 'Example GmbH', employees: 120, industry: 'Retail' }),
    },
  ];
}

// kafkajs logs through console.info by default, which is stdout; keep stdout
// for the JSON summary.
const stderrLogger = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log;
  process.stderr.write(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
};

async function main() {
  const opts = options();

  let schemaText;
  try {
    schemaText = fs.readFileSync(opts.schema, 'utf8');
    JSON.parse(schemaText);
  } catch (err) {
    throw new Error(`reading the Avro schema ${opts.schema}: ${err.message}`);
  }

  const registry = new SchemaRegistry({ host: opts.registry, clientId: 'streamcdp-node-example' });
  const subject = `${opts.topic}-value`;
  let schemaId;
  try {
    // Registering the same schema again returns the existing id. The subject
    // is set to BACKWARD on first registration; StreamCDP enforces that too.
    ({ id: schemaId } = await registry.register(
      { type: SchemaType.AVRO, schema: schemaText },
      { subject, compatibility: 'BACKWARD' },
    ));
  } catch (err) {
    throw new Error(`registering ${opts.schema} under ${subject} at ${opts.registry}: ${err.message}`);
  }

  const events = buildEvents(Date.now());
  const messages = [];
  for (const ev of events) {
    let value;
    try {
      value = await registry.encode(schemaId, ev);
    } catch (err) {
      const paths = (err.paths || []).map((p) => p.join('.')).join(', ');
      throw new Error(`encoding ${ev.type} ${ev.message_id}: ${err.message}${paths ? ` (invalid: ${paths})` : ''}`);
    }
    messages.push({
      // Keying by the device's anonymous id (else the user id) keeps one
      // visitor's events in order on one partition.
      key: ev.anonymous_id || ev.user_id || null,
      value,
      headers: { 'content-type': 'application/vnd.confluent.avro' },
    });
  }

  const kafka = new Kafka({
    clientId: 'streamcdp-node-example',
    brokers: opts.brokers,
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
  });
  // The Java-compatible (murmur2) partitioner: the same key lands on the
  // same partition as from a Java or librdkafka producer.
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  let results;
  try {
    results = await producer.send({
      topic: opts.topic,
      acks: -1,
      compression: CompressionTypes.None,
      messages,
    });
  } catch (err) {
    const type = err.type || (err.cause && err.cause.type);
    const hint = type === 'UNKNOWN_TOPIC_OR_PARTITION'
      ? ` (does topic ${opts.topic} exist? Create the topics with "cdp topology apply")`
      : '';
    throw new Error(`producing ${messages.length} events to ${opts.topic} at ${opts.brokers.join(',')}: ${err.message}${hint}`);
  } finally {
    await producer.disconnect();
  }

  const summary = {
    topic: opts.topic,
    subject,
    schema_id: schemaId,
    count: events.length,
    message_ids: events.map((e) => e.message_id),
    events: events.map((e) => ({ message_id: e.message_id, type: e.type, event: e.event || null })),
    partitions: results.map((r) => ({ partition: r.partition, base_offset: r.baseOffset, error_code: r.errorCode })),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main().catch((err) => {
  process.stderr.write(`produce.js: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
