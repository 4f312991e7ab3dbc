// Handshake: the fixed-newstyle negotiation of one NBD connection (proto.md "Newstyle
// negotiation", "Option types", "Option reply types"), written as one linear coroutine.
//
// Supports NBD_OPT_EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT and
// SET_META_CONTEXT (base:allocation). Anything else gets NBD_REP_ERR_UNSUP; malformed option
// payloads get NBD_REP_ERR_INVALID; unknown exports get NBD_REP_ERR_UNKNOWN.
//
// Threading: runs on whichever executor `stream` belongs to. It reads volume configs through
// VolumeManager::list() (a copy), so it never touches a Volume off its owner thread; on success
// the chosen volume is acquired and the caller must release() it.
#pragma once

#include "base/result.h"
#include "blockmap/volume_manager.h"
#include "target/nbd/byte_stream.h"
#include "target/nbd/protocol.h"

namespace cairn::target::nbd {

struct Negotiated {
  blockmap::Volume* volume = nullptr;  // acquired; the caller releases it
  Session session;                     // size_bytes is re-read on the owner thread
};

// Errors: the client aborted or disconnected, or the stream could not be framed. Either way
// the connection is closed; a log line has been written for protocol violations.
Task<Result<Negotiated>> negotiate(ByteStream& stream, blockmap::VolumeManager& volumes);

}  // namespace cairn::target::nbd
