// scsi::Reservations: the reservation state of one logical unit — SPC-2 RESERVE(6)/RELEASE(6)
// and SPC-5 persistent reservations (5.14, PERSISTENT RESERVE IN 6.15, OUT 6.16) — and the
// conflict check the Device runs before every command.
//
// Persistent state (registrations, the persistent reservation, PRgeneration, APTPL) is written
// to the MetaStore key "scsi-pr/<volume>" with compare-and-swap on its revision before a
// PERSISTENT RESERVE OUT completes, so it survives a restart of the node (docs/scsi.md,
// "Reservations"). RESERVE(6) reservations are volatile, as SPC-2 says.
//
// Threading: owned by the Device and used on the volume's owner reactor only. A PR OUT
// suspends while it persists; commands of other nexuses may run meanwhile and see the old
// state, which is the order SAM allows for concurrent tasks. PR OUTs are serialised with each
// other, so the stored state is always the in-memory one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/asio.h"
#include "base/result.h"
#include "io/async_mutex.h"
#include "io/meta_store.h"
#include "target/scsi/device.h"
#include "target/scsi/sense.h"

namespace cairn::target::scsi {

// Where unit attentions go; implemented by the Device, which queues them per nexus.
class UnitAttentionSink {
 public:
  virtual ~UnitAttentionSink() = default;
  virtual void post(uint64_t nexus_id, Asc asc) = 0;             // to one nexus
  virtual void post_all_except(uint64_t nexus_id, Asc asc) = 0;  // to every other nexus
};

// SPC-5 6.16.3, Table 228: persistent reservation types.
enum class PrType : uint8_t {
  none = 0,
  write_exclusive = 1,
  exclusive_access = 3,
  write_exclusive_registrants_only = 5,
  exclusive_access_registrants_only = 6,
  write_exclusive_all_registrants = 7,
  exclusive_access_all_registrants = 8,
};

class Reservations {
 public:
  // One registration: an I_T nexus (named by its initiator and target port names, which are
  // stable across sessions, unlike Nexus::id) and its reservation key.
  struct Registration {
    std::string initiator_port;  // Nexus::initiator_port ("iqn...,i,0x<isid>")
    std::string target_port;     // Nexus::target_port ("iqn...,t,0x<tpgt>")
    uint16_t relative_target_port = 1;
    uint64_t key = 0;
  };

  // Loads persisted state from meta key "scsi-pr/<volume>". `meta` and `ua` must outlive the
  // Reservations.
  static Task<Result<std::unique_ptr<Reservations>>> load(io::MetaStore& meta,
                                                          std::string volume_name,
                                                          UnitAttentionSink& ua);

  // True when this CDB from this nexus must complete with RESERVATION CONFLICT
  // (SPC-5 5.14 / SBC-4 tables of commands allowed under each reservation type, plus RESERVE(6)).
  [[nodiscard]] bool conflicts(const Nexus& nexus, std::span<const uint8_t> cdb) const;

  Task<Response> reserve6(const Nexus& nexus, std::span<const uint8_t> cdb);
  Task<Response> release6(const Nexus& nexus, std::span<const uint8_t> cdb);
  Task<Response> persistent_reserve_in(const Nexus& nexus, std::span<const uint8_t> cdb,
                                       std::vector<std::byte>& data_in);
  Task<Response> persistent_reserve_out(const Nexus& nexus, std::span<const uint8_t> cdb,
                                        std::span<const std::byte> data_out);

  // A session logged in: lets unit attentions for its registrations reach it before it has
  // sent any command (every other method also records the nexus it is given).
  void attach(const Nexus& nexus);
  void detach(const Nexus& nexus);  // session gone: drop its RESERVE(6)
  void reset();                     // LUN reset: drop RESERVE(6); persistent state stays

  // Read-only views for tests and diagnostics.
  [[nodiscard]] uint32_t generation() const noexcept { return state_.generation; }
  [[nodiscard]] const std::vector<Registration>& registrations() const noexcept {
    return state_.registrations;
  }
  [[nodiscard]] PrType reservation_type() const noexcept { return state_.type; }

  // Wire/storage form of the persistent state; public so tests can check the stored bytes.
  struct State {
    uint32_t generation = 0;  // PRgeneration (SPC-5 6.15.2)
    bool aptpl = false;       // activate persist through power loss
    std::vector<Registration> registrations;
    PrType type = PrType::none;
    // For the single-holder types, the index in `registrations` of the holder; for the
    // all-registrants types every registrant holds it and this is unused.
    std::optional<size_t> holder;
  };

  Reservations(const Reservations&) = delete;
  Reservations& operator=(const Reservations&) = delete;
  ~Reservations();

 private:
  Reservations(io::MetaStore& meta, std::string volume_name, UnitAttentionSink& ua,
               asio::any_io_executor executor);

  struct Reserve6Holder {
    uint64_t nexus_id = 0;
    std::string initiator_port;
  };

  [[nodiscard]] std::optional<size_t> find_registration(const Nexus& nexus) const;
  [[nodiscard]] bool is_holder(const Nexus& nexus) const;
  [[nodiscard]] bool has_reservation() const noexcept { return state_.type != PrType::none; }
  Task<Result<void>> persist(const State& next);
  // Posts `asc` to every nexus whose registration is in `lost` other than `from`. Sessions are
  // found by initiator port through the registry of attached nexuses seen so far.
  void post_to_registrants(const std::vector<Registration>& regs, uint64_t except_nexus, Asc asc);

  // The PR OUT service actions (SPC-5 6.16.2); each returns the Response and, on success,
  // commits `next` to state_ after persisting it.
  struct ProutParams;
  Task<Response> pr_register(const Nexus& nexus, const ProutParams& p, bool ignore_existing);
  Task<Response> pr_reserve(const Nexus& nexus, const ProutParams& p);
  Task<Response> pr_release(const Nexus& nexus, const ProutParams& p);
  Task<Response> pr_clear(const Nexus& nexus, const ProutParams& p);
  Task<Response> pr_preempt(const Nexus& nexus, const ProutParams& p, bool abort);
  Task<Response> pr_register_and_move(const Nexus& nexus, const ProutParams& p,
                                      std::span<const std::byte> data_out);
  Task<Response> commit(State next);

  io::MetaStore& meta_;
  std::string volume_name_;
  std::string meta_key_;
  UnitAttentionSink& ua_;
  io::AsyncMutex prout_mutex_;
  State state_;
  int64_t revision_ = 0;  // mod_revision of meta_key_, 0 when it does not exist
  std::optional<Reserve6Holder> reserve6_;
  // Nexus ids seen per initiator port, so unit attentions for a registration reach its live
  // sessions. Filled by every call that carries a Nexus; entries for detached nexuses are
  // dropped by detach().
  std::vector<std::pair<std::string, uint64_t>> nexuses_;
};

}  // namespace cairn::target::scsi
