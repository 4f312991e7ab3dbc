// Tests of LocalMetaStore: etcd's CAS rules, durability across power cuts (with many
// compactions), calls from a thread other than the owner's, and bad input.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <thread>

#include "io/errors.h"
#include "io/local_meta_store.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::io {
namespace {

std::unique_ptr<LocalMetaStore> open_store(asio::io_context& ctx, SimLogFactory& logs) {
  auto log = test::run(ctx, logs.open("meta"));
  EXPECT_TRUE(log);
  if (!log) {
    return nullptr;
  }
  auto store = test::run(ctx, LocalMetaStore::open(std::move(*log), ctx.get_executor()));
  EXPECT_TRUE(store) << store.error().message();
  return store ? std::move(*store) : nullptr;
}

TEST(LocalMetaStore, FollowsEtcdRevisionRules) {
  asio::io_context ctx;
  SimLogFactory logs(64 * 1024);
  auto store = open_store(ctx, logs);
  EXPECT_EQ(test::run(ctx, store->put_if("a", "1", 0)).value(), 1);
  EXPECT_EQ(test::run(ctx, store->put_if("a", "2", 0)).error(), errc::conflict);
  EXPECT_EQ(test::run(ctx, store->put_if("b", "x", 0)).value(), 2);
  EXPECT_EQ(test::run(ctx, store->put_if("a", "2", 1)).value(), 3);
  EXPECT_EQ(test::run(ctx, store->erase_if("a", 1)).error(), errc::conflict);
  EXPECT_EQ(test::run(ctx, store->erase_if("zz", 1)).error(), errc::not_found);
  auto a = test::run(ctx, store->get("a")).value();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->value, "2");
  EXPECT_EQ(a->mod_revision, 3);
  EXPECT_TRUE(test::run(ctx, store->erase_if("a", 3)));
  EXPECT_FALSE(test::run(ctx, store->get("a")).value());
  EXPECT_EQ(test::run(ctx, store->put_if("a", "3", 0)).value(), 5);
  ASSERT_TRUE(test::run(ctx, store->put_if("vol/x", "", 0)));
  ASSERT_TRUE(test::run(ctx, store->put_if("vol/y", "y", 0)));
  auto listed = test::run(ctx, store->list("vol/")).value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].key, "vol/x");
  EXPECT_EQ(listed[1].key, "vol/y");
}

TEST(LocalMetaStore, RejectsBadInput) {
  asio::io_context ctx;
  SimLogFactory logs(64 * 1024);
  auto store = open_store(ctx, logs);
  EXPECT_EQ(test::run(ctx, store->put_if("", "v", 0)).error(), errc::invalid_argument);
  std::string big_key(LocalMetaStore::kMaxKeyBytes + 1, 'k');
  EXPECT_EQ(test::run(ctx, store->put_if(big_key, "v", 0)).error(), errc::invalid_argument);
  std::string big_value(LocalMetaStore::kMaxValueBytes + 1, 'v');
  EXPECT_EQ(test::run(ctx, store->put_if("k", big_value, 0)).error(), errc::invalid_argument);
  // A value larger than the log can ever hold is an error value, not a crash.
  std::string too_big(200 * 1024, 'v');
  EXPECT_FALSE(test::run(ctx, store->put_if("k", too_big, 0)));
}

void meta_crash_workload(uint64_t seed) {
  SCOPED_TRACE("replay with CAIRN_SEED=" + std::to_string(seed));
  asio::io_context ctx;
  std::mt19937_64 rng(seed);
  SimLogFactory logs(32 * 1024);  // small, so the store compacts often
  std::map<std::string, std::pair<std::string, int64_t>> model;
  int64_t revision = 0;
  for (int round = 0; round < 6; ++round) {
    auto store = open_store(ctx, logs);
    ASSERT_TRUE(store);
    ASSERT_EQ(store->revision(), revision);
    auto all = test::run(ctx, store->list("")).value();
    ASSERT_EQ(all.size(), model.size());
    for (const KeyValue& kv : all) {
      ASSERT_TRUE(model.count(kv.key)) << kv.key;
      EXPECT_EQ(kv.value, model[kv.key].first);
      EXPECT_EQ(kv.mod_revision, model[kv.key].second);
    }
    for (int i = 0; i < 80; ++i) {
      std::string key = "k" + std::to_string(rng() % 20);
      auto it = model.find(key);
      int64_t current = it == model.end() ? 0 : it->second.second;
      bool stale = rng() % 5 == 0;
      int64_t expected = stale ? current + 1 : current;
      if (it != model.end() && rng() % 4 == 0) {
        auto r = test::run(ctx, store->erase_if(key, expected));
        ASSERT_EQ(static_cast<bool>(r), !stale);
        if (r) {
          model.erase(key);
          ++revision;
        }
        continue;
      }
      std::string value(rng() % 700, static_cast<char>('a' + rng() % 26));
      auto r = test::run(ctx, store->put_if(key, value, expected));
      ASSERT_EQ(static_cast<bool>(r), !stale);
      if (r) {
        ASSERT_EQ(*r, ++revision);
        model[key] = {value, *r};
      }
    }
    store.reset();
    logs.power_cut_all(rng());
  }
}

TEST(LocalMetaStore, KeepsEveryCompletedCasAcrossPowerCuts) {
  if (const char* env = std::getenv("CAIRN_SEED")) {
    meta_crash_workload(std::strtoull(env, nullptr, 10));
    return;
  }
  for (uint64_t seed = 1; seed <= 30 && !HasFatalFailure(); ++seed) {
    meta_crash_workload(seed);
  }
}

TEST(LocalMetaStore, CallableFromAnotherThread) {
  asio::io_context owner_ctx;
  SimLogFactory logs(64 * 1024);
  auto store = open_store(owner_ctx, logs);
  auto work = asio::make_work_guard(owner_ctx);
  owner_ctx.restart();
  std::thread owner([&] { owner_ctx.run(); });
  asio::io_context caller;
  auto task = [&]() -> Task<bool> {
    auto id = std::this_thread::get_id();
    auto r = co_await store->put_if("x", "1", 0);
    bool same_thread = std::this_thread::get_id() == id;
    auto got = co_await store->get("x");
    co_return r&&* r == 1 && same_thread&& got&&* got && (*got)->value == "1";
  };
  EXPECT_TRUE(test::run(caller, task()));
  work.reset();
  owner.join();
}

}  // namespace
}  // namespace cairn::io
