// iscsi::Server: the iSCSI front end (RFC 7143), one target per volume.
//
// Listens on TCP (default 0.0.0.0:3260). A connection logs in on reactor 0 (login.h); a
// discovery session stays there, and a normal session's socket moves to its volume's owner
// reactor for the full feature phase (session.h), like NBD's (docs/architecture.md,
// "Threads"). Each normal session holds its volume acquired (VolumeManager::acquire) and is an
// I_T nexus of the volume's scsi::Device, which the server keeps one of per volume while any
// session uses it (opened on the owner reactor by the first login, destroyed with the last).
// A login with the same initiator name, ISID and target as a live session replaces it (session
// reinstatement, RFC 7143 section 6.3.5).
//
// Threading: construct, start() and stop() on the main thread (reactor 0's thread).
// Lifetime: destroy the Server only after the reactors have stopped.
// Errors: a port in use makes start() throw std::system_error. Malformed input never throws:
// it gets a Reject or login failure, or closes that connection only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "blockmap/volume_manager.h"
#include "io/meta_store.h"
#include "io/reactor.h"
#include "target/iscsi/login.h"
#include "target/iscsi/session.h"

namespace cairn::target::iscsi {

struct ServerOptions {
  std::string address = "0.0.0.0";
  uint16_t port = 3260;
  TargetOptions target;
  SessionOptions session;
  scsi::DeviceOptions device;  // every volume's SCSI logical unit
};

class Server {
 public:
  Server(io::ReactorPool& reactors, blockmap::VolumeManager& volumes, io::MetaStore& meta,
         ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  // Stops accepting and ends every connection and session.
  void stop();
  // True when no connection is open or being served (any thread). After stop(), the node
  // waits for this before it stops the reactors, so that no session is left suspended.
  [[nodiscard]] bool idle() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace cairn::target::iscsi
