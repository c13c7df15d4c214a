#!/usr/bin/env node
// Runs the @firestore-emulator/server gRPC Firestore emulator on loopback for
// the tests and the local stack.
//
//   node server.js [PORT] [--exit-on-stdin-close]
//
// PORT defaults to 8080; 0 picks a free port. Once the server accepts calls it
// prints one line: "Firestore emulator listening on 127.0.0.1:PORT".
// --exit-on-stdin-close makes it exit when its parent closes our stdin (or
// dies), so a crashed test run cannot leave an emulator behind.
//
// Why this file is more than `new FirestoreServer().start(port)`: the package
// has no transaction isolation. BeginTransaction hands out one constant dummy
// id and Commit never checks what the transaction read, so two concurrent
// read-check-write transactions can both "win". Real Firestore transactions
// are serializable (contention ends in ABORTED and the client library retries
// the transaction function), and the receiver relies on that. So we wrap the
// package's service with optimistic concurrency control:
//   - every transaction gets a unique id;
//   - each document read inside a transaction is recorded with the version it
//     had when read (a per-document write counter kept here: the package's
//     update times have millisecond resolution, so two writes could share one);
//   - Commit of a transaction fails with ABORTED, applying nothing, if any of
//     those documents was written since; Rollback forgets the transaction.
// Commit also checks every write's precondition (exists, update_time) before
// applying any write, so a failed precondition applies nothing either (the
// package applies writes one by one and ignores update_time), and stamps each
// commit with a time strictly after the previous one's, so two versions of a
// document never share an update time (see CommitDate). And a committed
// update drops the fields Firestore would drop: a set() replaces the
// document, a masked field the write leaves out is deleted
// (dropUnwrittenFields).
// Node runs one callback at a time and the package's Commit is synchronous, so
// check-then-apply is atomic. Not modelled: phantom reads (a document that
// starts matching a query read in a transaction) and lock waiting.
"use strict";

const crypto = require("node:crypto");
const { Server, ServerCredentials, status } = require("@grpc/grpc-js");
const { FirestoreServer, TimestampFromNow } = require("@firestore-emulator/server");
// The package's own (pinned, see package-lock.json) protobuf classes.
const {
  BatchGetDocumentsResponse,
  BeginTransactionResponse,
  RunQueryResponse,
} = require("@firestore-emulator/proto/dist/google/firestore/v1/firestore");
const {
  StructuredQuery,
  StructuredQueryDirection,
} = require("@firestore-emulator/proto/dist/google/firestore/v1/query");

const HOST = "127.0.0.1";
// Real Firestore expires transactions after 270 s; forget abandoned ones too.
const TRANSACTION_LIFETIME_MS = 270_000;

// The package builds its service object inside FirestoreServer's constructor
// and hands it straight to grpc-js without exporting it. Capture it there so we
// can serve it from our own loopback-bound server (the package binds 0.0.0.0).
function packageService() {
  const addService = Server.prototype.addService;
  let captured = null;
  Server.prototype.addService = function capture(definition, implementation) {
    captured = { definition, implementation };
  };
  let emulator;
  try {
    emulator = new FirestoreServer();
  } finally {
    Server.prototype.addService = addService;
  }
  return { ...captured, state: emulator.state };
}

function grpcError(code, message) {
  return { code, details: message, message, name: "Error" };
}

class TransactionTracker {
  constructor() {
    this.transactions = new Map(); // id (hex) -> { readOnly, reads: Map<path, version>, started }
    this.versions = new Map(); // document path -> number of writes applied to it
  }

  begin(options) {
    this.forgetExpired();
    const id = crypto.randomBytes(16);
    this.transactions.set(id.toString("hex"), {
      readOnly: Boolean(options?.has_read_only),
      reads: new Map(),
      started: Date.now(),
    });
    return id;
  }

  forgetExpired() {
    const oldest = Date.now() - TRANSACTION_LIFETIME_MS;
    for (const [key, txn] of this.transactions) {
      if (txn.started < oldest) this.transactions.delete(key);
    }
  }

  get(id) {
    return id?.length ? this.transactions.get(Buffer.from(id).toString("hex")) : undefined;
  }

  take(id) {
    const txn = this.get(id);
    if (txn) this.transactions.delete(Buffer.from(id).toString("hex"));
    return txn;
  }

  version(path) {
    return this.versions.get(path) ?? 0;
  }

  recordRead(id, path) {
    const txn = this.get(id);
    // The first read wins: that is the version the transaction's logic saw.
    if (txn && !txn.reads.has(path)) txn.reads.set(path, this.version(path));
  }

  changedSinceRead(txn) {
    for (const [path, version] of txn.reads) {
      if (this.version(path) !== version) return path;
    }
    return null;
  }

  recordWrite(path) {
    this.versions.set(path, this.version(path) + 1);
  }
}

function writtenPath(write) {
  if (write.has_update) return write.update.name;
  if (write.has_delete) return write.delete;
  return null;
}

function sameTimestamp(a, b) {
  return Number(a.seconds) === Number(b.seconds) && Number(a.nanos) === Number(b.nanos);
}

// The first failing precondition among the writes, as a gRPC error, or null.
function preconditionError(state, writes) {
  for (const write of writes) {
    const path = writtenPath(write);
    if (!path || !write.has_current_document) continue;
    const document = state.getDocument(path);
    const exists = document.metadata.hasExist;
    const condition = write.current_document;
    if (condition.has_exists && condition.exists && !exists) {
      return grpcError(status.NOT_FOUND, `no entity to update: ${path}`);
    }
    if (condition.has_exists && !condition.exists && exists) {
      return grpcError(status.ALREADY_EXISTS, `entity already exists: ${path}`);
    }
    if (
      condition.has_update_time &&
      (!exists || !sameTimestamp(document.toV1Document().update_time, condition.update_time))
    ) {
      return grpcError(status.FAILED_PRECONDITION, `the stored version does not match: ${path}`);
    }
  }
  return null;
}

// Firestore's update semantics, which the package lacks (it only ever sets
// the fields a write carries). From the v1 Write reference
// (https://cloud.google.com/firestore/docs/reference/rest/v1/Write): with an
// updateMask, "fields referenced in the mask, but not present in the input
// document, are deleted from the document on the server"; without one, an
// update replaces the document, so fields it does not carry are gone too (the
// client library's set() without merge, a workflow's tombstone patch). Only
// top-level field paths are modelled, which is all this project writes; a
// dotted path is left to the package.
function dropUnwrittenFields(state, writes) {
  for (const write of writes) {
    if (!write.has_update) continue;
    const document = state.getDocument(write.update.name);
    if (!document.metadata.hasExist) continue;
    const carried = new Set(write.update.fields ? write.update.fields.keys() : []);
    for (const transform of write.update_transforms ?? []) carried.add(transform.field_path);
    const masked = write.has_update_mask ? write.update_mask.field_paths : null;
    const candidates = masked ? masked.filter((path) => !path.includes(".")) : Object.keys(document.fields);
    const dropped = new Set(candidates.filter((name) => !carried.has(name)));
    if (dropped.size === 0) continue;
    document.fields = Object.fromEntries(
      Object.entries(document.fields).filter(([name]) => !dropped.has(name)),
    );
  }
}

// Paging by document name, which the package cannot do: it ignores
// start_at/end_at cursors and offset (every page would be the first page, so
// a paging reader loops forever) and does not sort by __name__. A query
// ordered by __name__ alone is answered here, as Firestore answers it
// (https://cloud.google.com/firestore/docs/query-data/query-cursors): sorted by
// name, cursors on the name, then offset and limit. A cursor or offset on any
// other order is refused (UNIMPLEMENTED), never answered wrong.
const NAME = "__name__";

function orderedByNameOnly(query) {
  return query.order_by.length > 0 && query.order_by.every((order) => order.field.field_path === NAME);
}

function pagingRefusal(query) {
  const pages = query.has_start_at || query.has_end_at || query.offset > 0;
  if (!pages) return null;
  if (!orderedByNameOnly(query)) {
    return "this emulator pages (cursors, offset) only on a query ordered by __name__ alone";
  }
  for (const cursor of [query.has_start_at && query.start_at, query.has_end_at && query.end_at]) {
    if (cursor && (cursor.values.length !== 1 || !cursor.values[0].reference_value)) {
      return "this emulator's cursors must be one document reference";
    }
  }
  return null;
}

function queryByName(state, parent, query) {
  const unordered = StructuredQuery.deserializeBinary(query.serializeBinary());
  unordered.order_by = [];
  unordered.start_at = undefined;
  unordered.end_at = undefined;
  unordered.offset = 0;
  unordered.limit = undefined;
  const descending = query.order_by[0].direction === StructuredQueryDirection.DESCENDING;
  const name = (document) => document.getPath(); // the v1 name, without building the document
  const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0) * (descending ? -1 : 1);
  let documents = state
    .v1Query(parent, unordered)
    .map((document) => [name(document), document])
    .sort(([a], [b]) => compare(a, b));
  if (query.has_start_at) {
    const at = query.start_at.values[0].reference_value;
    documents = documents.filter(([n]) => compare(n, at) > 0 || (query.start_at.before && n === at));
  }
  if (query.has_end_at) {
    const at = query.end_at.values[0].reference_value;
    documents = documents.filter(([n]) => compare(n, at) < 0 || (!query.end_at.before && n === at));
  }
  documents = documents.slice(query.offset);
  if (query.has_limit) documents = documents.slice(0, query.limit.value);
  return documents.map(([, document]) => document);
}

// Real Firestore never gives two versions of a document the same update
// time. The package stamps a commit with new Date(), at millisecond
// resolution, so back-to-back commits could share one, and an update_time
// precondition naming the older version would then match the newer one: a
// delete conditioned on a stale read would delete a newer document. So each
// commit gets a time strictly after the previous commit's.
const RealDate = Date;
let lastCommitMillis = 0;

class CommitDate extends RealDate {
  constructor(...args) {
    if (args.length > 0) {
      super(...args);
      return;
    }
    lastCommitMillis = Math.max(RealDate.now(), lastCommitMillis + 1);
    super(lastCommitMillis);
  }
}

// Runs the package's synchronous Commit with `new Date()` answering CommitDate.
function withCommitClock(commit) {
  globalThis.Date = CommitDate;
  try {
    return commit();
  } finally {
    globalThis.Date = RealDate;
  }
}

function isolatedService({ definition, implementation, state }) {
  const tracker = new TransactionTracker();

  const overrides = {
    BeginTransaction(call, callback) {
      const transaction = tracker.begin(call.request.options);
      callback(null, BeginTransactionResponse.fromObject({ transaction }));
    },

    // Same answers as the package's, but with a real transaction id and the
    // reads recorded against it.
    BatchGetDocuments(call) {
      const request = call.request;
      let transaction = null;
      if (request.has_new_transaction) {
        transaction = tracker.begin(request.new_transaction);
        call.write(BatchGetDocumentsResponse.fromObject({ transaction }));
      } else if (request.has_transaction) {
        transaction = request.transaction;
      }
      const readTime = TimestampFromNow();
      for (const path of request.documents) {
        const document = state.getDocument(path);
        if (transaction) tracker.recordRead(transaction, path);
        const exists = document.metadata.hasExist;
        call.write(
          BatchGetDocumentsResponse.fromObject({
            found: exists ? document.toV1DocumentObject() : undefined,
            missing: exists ? undefined : path,
            read_time: readTime,
          }),
        );
      }
      call.end();
    },

    // Delegates to the package, recording each returned document as read and
    // replacing the package's untracked id for new_transaction.
    RunQuery(call) {
      const request = call.request;
      let transaction = null;
      if (request.consistency_selector === "new_transaction") {
        transaction = tracker.begin(request.new_transaction);
      } else if (request.consistency_selector === "transaction") {
        transaction = request.transaction;
      }
      const write = call.write.bind(call);
      call.write = (response) => {
        if (request.consistency_selector === "new_transaction") {
          response.transaction = transaction;
        }
        if (transaction && response.has_document) {
          tracker.recordRead(transaction, response.document.name);
        }
        return write(response);
      };
      const query = request.structured_query;
      const refusal = query ? pagingRefusal(query) : null;
      if (refusal) {
        call.emit("error", grpcError(status.UNIMPLEMENTED, refusal));
        return;
      }
      if (!query || !orderedByNameOnly(query)) {
        implementation.RunQuery(call);
        return;
      }
      const readTime = TimestampFromNow();
      const documents = queryByName(state, request.parent, query);
      for (const document of documents) {
        call.write(
          RunQueryResponse.fromObject({
            document: document.toV1DocumentObject(),
            read_time: readTime,
            skipped_results: 0,
          }),
        );
      }
      call.write(RunQueryResponse.fromObject({ done: true, read_time: readTime }));
      call.end();
    },

    Commit(call, callback) {
      const request = call.request;
      const writes = request.writes;
      if (request.transaction?.length) {
        const txn = tracker.take(request.transaction);
        if (!txn) {
          callback(grpcError(status.INVALID_ARGUMENT, "transaction is not active"));
          return;
        }
        if (txn.readOnly && writes.length > 0) {
          callback(grpcError(status.INVALID_ARGUMENT, "read-only transaction cannot write"));
          return;
        }
        const changed = txn.readOnly ? null : tracker.changedSinceRead(txn);
        if (changed) {
          callback(
            grpcError(status.ABORTED, `transaction contention: ${changed} changed since read`),
          );
          return;
        }
      }
      const failed = preconditionError(state, writes);
      if (failed) {
        callback(failed);
        return;
      }
      try {
        withCommitClock(() =>
          implementation.Commit(call, (error, response) => {
            if (!error) dropUnwrittenFields(state, writes);
            callback(error, response);
          }),
        );
      } finally {
        // Conservatively count every write as applied, even if the package
        // failed part way: a spurious ABORTED is retried, a missed one is a
        // lost update.
        for (const write of writes) {
          const path = writtenPath(write);
          if (path) tracker.recordWrite(path);
        }
      }
    },

    Rollback(call, callback) {
      tracker.take(call.request.transaction);
      implementation.Rollback(call, callback);
    },
  };

  // grpc-js binds each handler to the object it is given; the package's
  // methods use private fields, so bind them to the package's own instance.
  const service = {};
  for (const name of Object.keys(definition)) {
    if (overrides[name]) {
      service[name] = overrides[name];
    } else if (typeof implementation[name] === "function") {
      service[name] = implementation[name].bind(implementation);
    }
  }
  return service;
}

function main() {
  const args = process.argv.slice(2);
  const portArg = args.find((arg) => !arg.startsWith("--")) ?? "8080";
  const port = Number.parseInt(portArg, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid port: ${portArg}`);
    process.exit(2);
  }

  const captured = packageService();
  const server = new Server();
  server.addService(captured.definition, isolatedService(captured));
  server.bindAsync(`${HOST}:${port}`, ServerCredentials.createInsecure(), (err, boundPort) => {
    if (err) {
      console.error(`cannot listen on ${HOST}:${port}: ${err.message}`);
      process.exit(1);
    }
    console.log(`Firestore emulator listening on ${HOST}:${boundPort}`);
  });

  const shutdown = () => {
    server.forceShutdown();
    process.exit(0);
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  if (args.includes("--exit-on-stdin-close")) {
    process.stdin.on("end", shutdown);
    process.stdin.on("error", shutdown);
    process.stdin.resume();
  }
}

main();
