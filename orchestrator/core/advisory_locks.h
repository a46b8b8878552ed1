// Every PostgreSQL advisory lock testpool takes, in one place, so no two can collide.
//
// The two-key locks share a first key, "tp" in ASCII followed by one byte naming the lock
// (1953505280 + n); the second key narrows the scope. All of them live in the control database
// `testpool` (kControlDatabase) unless said otherwise, so they coordinate every daemon that
// shares one control server.
#pragma once

namespace testpool::core {

// Schema migration of the control database: pg_advisory_lock(kSchemaLockClass, kSchemaLockKey),
// session level, held by ControlStore::Open while it migrates, then released. Two daemons
// starting on one server migrate one after the other.
inline constexpr int kSchemaLockClass = 1953505280;  // "tp" "schema"
inline constexpr int kSchemaLockKey = 1;

// A template build: pg_try_advisory_lock / pg_advisory_lock(kBuildLockClass, <the first 8 hex
// digits of the template hash as a signed 32-bit integer>), session level, held by the
// TemplateBuilder building that hash until the build ends. One build per hash across daemons
// (two hashes sharing those digits only serialise).
inline constexpr int kBuildLockClass = 1953505281;  // "tp" "templates"

// The pool manager of a control server: pg_try_advisory_lock(kPoolsLockClass, kPoolsLockKey),
// session level, taken by PoolManager::Start and held on a connection of its own until Stop.
// A daemon that finds it taken stays passive (no leases).
inline constexpr int kPoolsLockClass = 1953505282;  // "tp" "pools"
inline constexpr int kPoolsLockKey = 1;

// A builder namespace: pg_advisory_xact_lock(hashtextextended(kBuildNamespaceLockPrefix || ns, 0)),
// transaction level, in the database being built into (a lease's or a shared one), held by the
// builder run that writes namespace `ns` there. One-key (bigint) lock space, unlike the above.
inline constexpr const char* kBuildNamespaceLockPrefix = "testpool.build:";

}  // namespace testpool::core
