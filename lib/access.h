// Access: how the library's own code reaches inside its public handles
// (Tenant, Engine), instead of a friend list on each. The one friend of
// those classes.
//
// Thread safety: as the handles.

#ifndef TENANCY_LIB_ACCESS_H_
#define TENANCY_LIB_ACCESS_H_

#include <memory>
#include <utility>

#include "engine_parts.h"
#include "tenancy/engine.h"
#include "tenancy/tenant.h"
#include "tenant_slot.h"

namespace tenancy::internal {

class Access {
 public:
  static TenantSlot& Slot(const Tenant& tenant) { return *tenant.slot_; }
  static const std::shared_ptr<TenantSlot>& SlotPtr(const Tenant& tenant) { return tenant.slot_; }
  static EngineParts& Parts(const Tenant& tenant) { return *tenant.parts_; }
  static EngineParts& Parts(const Engine& engine) { return *engine.parts_; }
  static Tenant MakeTenant(std::shared_ptr<TenantSlot> slot, EngineParts* parts) {
    return Tenant(std::move(slot), parts);
  }
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_ACCESS_H_
