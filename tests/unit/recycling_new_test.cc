// The global operator new/delete replacement (base/recycling_new.cc) that cairnd links: this
// binary links it too, so every allocation here goes through BlockCache.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/asio.h"
#include "base/block_cache.h"

namespace cairn::base {
namespace {

TEST(RecyclingNew, NewAndDeleteGoThroughTheBlockCache) {
  BlockCache::release_thread_cache();
  auto before = BlockCache::thread_stats();
  auto p = std::make_unique<std::string>(100, 'x');
  p.reset();
  auto q = std::make_unique<std::string>(100, 'y');  // the same two blocks again
  EXPECT_GT(BlockCache::thread_stats().mallocs, before.mallocs);
  EXPECT_GE(BlockCache::thread_stats().reuses, before.reuses + 2);
  EXPECT_EQ(*q, std::string(100, 'y'));
}

Task<int> add_one(int v) {
  // Yield, so that many chains hold frames at once: more than Asio's own two-block cache.
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  co_return v + 1;
}

Task<void> chain(int rounds, int& total) {
  for (int i = 0; i < rounds; ++i) {
    total = co_await add_one(total);
  }
}

int run_chains(asio::io_context& context, int chains, int rounds) {
  std::vector<int> totals(static_cast<std::size_t>(chains), 0);
  for (int& t : totals) {
    asio::co_spawn(context, chain(rounds, t), asio::detached);
  }
  context.restart();
  context.run();
  int sum = 0;
  for (int t : totals) {
    sum += t;
  }
  return sum;
}

// Asio's coroutine frames and operations reach operator new (CMakeLists.txt disables its
// aligned_alloc path), so a steady coroutine workload recycles instead of calling malloc.
TEST(RecyclingNew, CoroutineFramesAreRecycled) {
  asio::io_context context;
  ASSERT_EQ(run_chains(context, 64, 10), 640);  // warms the lists
  auto warm = BlockCache::thread_stats();
  ASSERT_EQ(run_chains(context, 64, 200), 64 * 200);
  auto after = BlockCache::thread_stats();
  // Asio's own two-block cache serves most frames; what it cannot hold comes back from the
  // lists, and nothing new is malloc'ed once they are warm.
  EXPECT_GE(after.reuses - warm.reuses, 100u);
  EXPECT_LT(after.mallocs - warm.mallocs, 64u);
}

// Objects made on one thread and destroyed on another, as a reactor hands work around.
TEST(RecyclingNew, ObjectsCrossThreads) {
  std::vector<std::unique_ptr<std::map<int, std::string>>> made;
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) {
      auto m = std::make_unique<std::map<int, std::string>>();
      for (int k = 0; k < 10; ++k) {
        (*m)[k] = std::string(static_cast<std::size_t>(k * 40), static_cast<char>('a' + k));
      }
      made.push_back(std::move(m));
    }
  });
  producer.join();
  std::thread consumer([&] {
    for (auto& m : made) {
      ASSERT_EQ(m->size(), 10u);
      ASSERT_EQ((*m)[9], std::string(360, 'j'));
      m.reset();
    }
  });
  consumer.join();
}

}  // namespace
}  // namespace cairn::base
