// SCSI operation codes and service actions cairn's logical unit implements (SPC-5, SBC-4).
#pragma once

#include <cstdint>

namespace cairn::target::scsi::op {

inline constexpr uint8_t kTestUnitReady = 0x00;
inline constexpr uint8_t kRequestSense = 0x03;
inline constexpr uint8_t kRead6 = 0x08;
inline constexpr uint8_t kWrite6 = 0x0A;
inline constexpr uint8_t kInquiry = 0x12;
inline constexpr uint8_t kModeSelect6 = 0x15;
inline constexpr uint8_t kReserve6 = 0x16;
inline constexpr uint8_t kRelease6 = 0x17;
inline constexpr uint8_t kModeSense6 = 0x1A;
inline constexpr uint8_t kStartStopUnit = 0x1B;
inline constexpr uint8_t kReadCapacity10 = 0x25;
inline constexpr uint8_t kRead10 = 0x28;
inline constexpr uint8_t kWrite10 = 0x2A;
inline constexpr uint8_t kWriteAndVerify10 = 0x2E;
inline constexpr uint8_t kVerify10 = 0x2F;
inline constexpr uint8_t kPrefetch10 = 0x34;
inline constexpr uint8_t kSynchronizeCache10 = 0x35;
inline constexpr uint8_t kReadDefectData10 = 0x37;
inline constexpr uint8_t kWriteSame10 = 0x41;
inline constexpr uint8_t kUnmap = 0x42;
inline constexpr uint8_t kSanitize = 0x48;
inline constexpr uint8_t kModeSelect10 = 0x55;
inline constexpr uint8_t kModeSense10 = 0x5A;
inline constexpr uint8_t kPersistentReserveIn = 0x5E;
inline constexpr uint8_t kPersistentReserveOut = 0x5F;
inline constexpr uint8_t kExtendedCopy = 0x83;
inline constexpr uint8_t kReceiveCopyResults = 0x84;
inline constexpr uint8_t kRead16 = 0x88;
inline constexpr uint8_t kCompareAndWrite = 0x89;
inline constexpr uint8_t kWrite16 = 0x8A;
inline constexpr uint8_t kOrWrite = 0x8B;
inline constexpr uint8_t kWriteAndVerify16 = 0x8E;
inline constexpr uint8_t kVerify16 = 0x8F;
inline constexpr uint8_t kPrefetch16 = 0x90;
inline constexpr uint8_t kSynchronizeCache16 = 0x91;
inline constexpr uint8_t kWriteSame16 = 0x93;
inline constexpr uint8_t kWriteAtomic16 = 0x9C;
inline constexpr uint8_t kServiceActionIn16 = 0x9E;
inline constexpr uint8_t kReportLuns = 0xA0;
inline constexpr uint8_t kMaintenanceIn = 0xA3;
inline constexpr uint8_t kRead12 = 0xA8;
inline constexpr uint8_t kWrite12 = 0xAA;
inline constexpr uint8_t kWriteAndVerify12 = 0xAE;
inline constexpr uint8_t kVerify12 = 0xAF;
inline constexpr uint8_t kReadDefectData12 = 0xB7;

// SERVICE ACTION IN(16).
inline constexpr uint8_t kSaReadCapacity16 = 0x10;
inline constexpr uint8_t kSaGetLbaStatus = 0x12;
// MAINTENANCE IN.
inline constexpr uint8_t kSaReportSupportedOpcodes = 0x0C;
// SANITIZE.
inline constexpr uint8_t kSaOverwrite = 0x01;
inline constexpr uint8_t kSaBlockErase = 0x02;
inline constexpr uint8_t kSaCryptoErase = 0x03;
inline constexpr uint8_t kSaExitFailureMode = 0x1F;

}  // namespace cairn::target::scsi::op
