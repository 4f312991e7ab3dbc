// VolumeManager: volumes get a journal and a root; load() after a restart finds them with
// their data; remove() deletes the record, the root, the journal and the chunks.
#include "blockmap/volume_manager.h"

#include <gtest/gtest.h>

#include "blockmap/errors.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::blockmap {
namespace {

const std::byte kKey[1] = {std::byte{4}};

class VolumeManagerTest : public ::testing::Test {
 protected:
  template <class T>
  T run(Task<T> task) {
    return test::run(reactors.at(0).context(), std::move(task));
  }

  VolumeConfig config(std::string name) {
    VolumeConfig c;
    c.name = std::move(name);
    c.size_bytes = 1 << 20;
    return c;
  }

  io::ReactorPool reactors{1, 64};
  io::ChunkHasher hasher{io::ChunkHasher::Kind::xxh3, kKey};
  io::MemChunkStore store{hasher};
  io::MemMetaStore meta;
  io::SimLogFactory logs{64 << 10};
};

TEST_F(VolumeManagerTest, LoadFindsVolumesWithTheirFlushedData) {
  auto data = test::pattern(8192, 3);
  {
    VolumeManager volumes(reactors, store, meta, &logs, 1 << 20);
    ASSERT_TRUE(run(volumes.create(config("a"))));
    ASSERT_TRUE(run(volumes.create(config("b"))));
    EXPECT_EQ(run(volumes.create(config("a"))).error(), errc::already_exists);
    Volume* a = volumes.acquire("a");
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(run(a->write(4096, data)));
    ASSERT_TRUE(run(a->flush()));
    volumes.release(a);
    EXPECT_NE(logs.disk(Volume::journal_name("a")), nullptr);
  }
  VolumeManager again(reactors, store, meta, &logs, 1 << 20);
  ASSERT_TRUE(run(again.load()));
  EXPECT_EQ(again.list().size(), 2u);
  Volume* a = again.acquire("a");
  ASSERT_NE(a, nullptr);
  std::vector<std::byte> out(8192);
  ASSERT_TRUE(run(a->read(4096, out)));
  EXPECT_EQ(out, data);
  again.release(a);
}

TEST_F(VolumeManagerTest, RemoveDeletesRecordRootJournalAndChunks) {
  VolumeManager volumes(reactors, store, meta, &logs, 1 << 20);
  ASSERT_TRUE(run(volumes.create(config("gone"))));
  Volume* v = volumes.acquire("gone");
  ASSERT_NE(v, nullptr);
  ASSERT_TRUE(run(v->write(0, test::pattern(65536, 1))));
  ASSERT_TRUE(run(v->flush()));
  EXPECT_EQ(run(volumes.remove("gone")).error(), errc::busy);
  volumes.release(v);
  ASSERT_TRUE(run(volumes.remove("gone")));
  EXPECT_EQ(run(volumes.remove("gone")).error(), errc::not_found);
  EXPECT_EQ(volumes.acquire("gone"), nullptr);
  auto left = run(meta.list(""));
  ASSERT_TRUE(left);
  EXPECT_TRUE(left->empty());
  EXPECT_EQ(logs.disk(Volume::journal_name("gone")), nullptr);
  EXPECT_EQ(store.stats().chunks, 0u);
  // A new volume of the same name starts empty.
  ASSERT_TRUE(run(volumes.create(config("gone"))));
  Volume* fresh = volumes.acquire("gone");
  ASSERT_NE(fresh, nullptr);
  std::vector<std::byte> out(65536, std::byte{1});
  ASSERT_TRUE(run(fresh->read(0, out)));
  EXPECT_EQ(out, std::vector<std::byte>(65536));
  volumes.release(fresh);
}

TEST_F(VolumeManagerTest, ResizeIsRecordedAndDurable) {
  {
    VolumeManager volumes(reactors, store, meta, &logs, 1 << 20);
    ASSERT_TRUE(run(volumes.create(config("r"))));
    ASSERT_TRUE(run(volumes.resize("r", 4 << 20)));
    EXPECT_EQ(run(volumes.resize("r", 4097)).error(), errc::invalid_argument);
    EXPECT_EQ(run(volumes.resize("nope", 4096)).error(), errc::not_found);
  }
  VolumeManager again(reactors, store, meta, &logs, 1 << 20);
  ASSERT_TRUE(run(again.load()));
  auto list = again.list();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].size_bytes, 4u << 20);
}

TEST_F(VolumeManagerTest, AccessRulesAreValidatedRecordedAndDurable) {
  VolumeAccess rules;
  rules.initiators = {"iqn.2026-11.org.example:host1"};
  rules.chap_user = "alice";
  rules.chap_secret = "twelve-bytes!";
  rules.mutual_user = "target";
  rules.mutual_secret = "another secret";
  {
    VolumeManager volumes(reactors, store, meta, &logs, 1 << 20);
    ASSERT_TRUE(run(volumes.create(config("acl"))));
    EXPECT_EQ(volumes.config("acl")->access, VolumeAccess{});
    ASSERT_TRUE(run(volumes.set_access("acl", rules)));
    EXPECT_EQ(volumes.config("acl")->access, rules);
    // A resize keeps the rules in the record.
    ASSERT_TRUE(run(volumes.resize("acl", 2 << 20)));
    EXPECT_EQ(volumes.config("acl")->access, rules);

    VolumeAccess short_secret = rules;
    short_secret.chap_secret = "short";
    EXPECT_EQ(run(volumes.set_access("acl", short_secret)).error(), errc::invalid_argument);
    VolumeAccess same_secret = rules;
    same_secret.mutual_secret = rules.chap_secret;
    EXPECT_EQ(run(volumes.set_access("acl", same_secret)).error(), errc::invalid_argument);
    VolumeAccess mutual_only;
    mutual_only.mutual_user = "target";
    mutual_only.mutual_secret = "another secret";
    EXPECT_EQ(run(volumes.set_access("acl", mutual_only)).error(), errc::invalid_argument);
    VolumeAccess bad_name;
    bad_name.initiators = {"host1"};
    EXPECT_EQ(run(volumes.set_access("acl", bad_name)).error(), errc::invalid_argument);
    EXPECT_EQ(run(volumes.set_access("nope", rules)).error(), errc::not_found);
    EXPECT_EQ(volumes.config("nope"), std::nullopt);
  }
  VolumeManager again(reactors, store, meta, &logs, 1 << 20);
  ASSERT_TRUE(run(again.load()));
  auto reloaded = again.config("acl");
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->access, rules);
  EXPECT_EQ(reloaded->size_bytes, 2u << 20);
  EXPECT_TRUE(reloaded->access.allows("IQN.2026-11.org.example:HOST1"));
  EXPECT_FALSE(reloaded->access.allows("iqn.2026-11.org.example:host2"));
  EXPECT_TRUE(VolumeAccess{}.allows("iqn.anything"));
}

}  // namespace
}  // namespace cairn::blockmap
