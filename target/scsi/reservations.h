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
#include <string_view>
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
  // One registration (SPC-5 5.14.7): an I_T nexus, named by its initiator and target port
  // names (stable across sessions, unlike Nexus::id), and its reservation key.
  // An initiator_port without ",i,0x" (registered through a TransportID of format 00b) stands
  // for every port of that initiator; an empty target_port (ALL_TG_PT) for every target port.
  struct Registration {
    std::string initiator_port;
    std::string target_port;
    uint16_t relative_target_port = 1;
    uint64_t key = 0;
  };

  // The persistent state, as stored under "scsi-pr/<volume>" (docs/scsi.md).
  struct State {
    uint32_t generation = 0;  // PRgeneration (SPC-5 6.15.2)
    bool aptpl = false;       // activate persist through power loss
    std::vector<Registration> registrations;
    PrType type = PrType::none;
    // The holding registration's names, for the single-holder types; empty for the
    // all-registrants types, where every registrant holds the reservation.
    std::string holder_initiator_port;
    std::string holder_target_port;
  };

  // At most this many registrations; more is INSUFFICIENT REGISTRATION RESOURCES.
  static constexpr size_t kMaxRegistrations = 256;

  // Loads persisted state from meta key "scsi-pr/<volume>". State saved with APTPL=0 is
  // discarded (a restart of the serving node is a power cycle of the logical unit); its
  // PRgeneration is kept. `meta` and `ua` must outlive the Reservations.
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
  [[nodiscard]] const State& state() const noexcept { return state_; }
  [[nodiscard]] bool reserved6() const noexcept { return reserve6_.has_value(); }

  // The stored form of a State (JSON, docs/scsi.md "Reservations") and back.
  [[nodiscard]] static std::string encode(const State& state);
  [[nodiscard]] static Result<State> decode(std::string_view json) noexcept;

  Reservations(const Reservations&) = delete;
  Reservations& operator=(const Reservations&) = delete;
  ~Reservations();

 private:
  struct Live {  // an attached session, for delivering unit attentions
    uint64_t id = 0;
    std::string initiator_name;
    std::string initiator_port;
    std::string target_port;
  };
  struct Pending {  // a unit attention to post once a change is persisted
    uint64_t nexus_id = 0;
    Asc asc = Asc::no_additional_sense;
  };
  struct Change {                  // the outcome of a PR OUT service action
    std::optional<Response> done;  // set: finish with this and change nothing
    State next;
    std::vector<Pending> attentions;
  };
  struct ProutParams;

  Reservations(io::MetaStore& meta, std::string volume_name, UnitAttentionSink& ua);

  void remember(const Nexus& nexus) const;
  [[nodiscard]] std::vector<uint64_t> live_nexuses(const Registration& reg) const;
  void notify(Change& change, const Registration& reg, uint64_t except_id, Asc asc) const;
  [[nodiscard]] bool pr_state_exists() const noexcept;

  // Parses and checks a PR OUT's CDB and parameter list into `p`; the error Response if bad.
  static std::optional<Response> parse_prout(std::span<const uint8_t> cdb,
                                             std::span<const std::byte> data_out, ProutParams& p);
  // Starts a PR OUT change from the current state. Returns the nexus's registration, or
  // nullptr with `c.done` set to RESERVATION CONFLICT when the nexus is not registered with
  // the reservation key `p` gives (every PR OUT service action but the two REGISTERs).
  const Registration* start_change(Change& c, const Nexus& nexus, const ProutParams& p) const;
  Change pr_register(const Nexus& nexus, const ProutParams& p, bool ignore_existing) const;
  Change pr_reserve(const Nexus& nexus, const ProutParams& p) const;
  Change pr_release(const Nexus& nexus, const ProutParams& p) const;
  Change pr_clear(const Nexus& nexus, const ProutParams& p) const;
  Change pr_preempt(const Nexus& nexus, const ProutParams& p) const;
  Change pr_register_and_move(const Nexus& nexus, const ProutParams& p) const;
  Task<Response> commit(Change change);

  io::MetaStore& meta_;
  std::string volume_name_;
  std::string meta_key_;
  UnitAttentionSink& ua_;
  io::AsyncMutex prout_mutex_;  // one PR OUT at a time, so state_ is what is stored
  State state_;
  int64_t revision_ = 0;  // mod_revision of meta_key_, 0 when it does not exist
  struct Reserve6Holder {
    uint64_t nexus_id = 0;
    std::string initiator_port;
  };
  std::optional<Reserve6Holder> reserve6_;
  // Sessions seen (attach() or any command), so unit attentions for a registration reach
  // every live session of it. Bounded by the sessions logged in; detach() drops entries.
  mutable std::vector<Live> live_;
};

}  // namespace cairn::target::scsi
