-- Argo CD health check for connectivity-operator.dev kinds (ProviderConfig, ServiceProfile,
-- ConnectivitySubscription; the three health.lua files are identical). Lua 5.1, as Argo CD runs it:
-- `obj` is the live object, the script returns `hs` with `status` and `message`.
--
-- Order of the checks:
--   1. deletion blocked (InUse while being deleted)      -> Degraded
--   2. spec.managementPolicy Paused                      -> Suspended
--   3. no status yet, or status older than the spec      -> Progressing
--   4. an asynchronous vendor change is pending          -> Progressing
--   5. the Synced condition, then Ready, by reason:
--        needs a person (spec, Secret, vendor state)     -> Degraded
--        Pending / Creating, transient vendor or API     -> Progressing
--        Ready=True                                      -> Healthy
--        Ready=False Drifted / NotFound (observe-only)   -> Degraded
--        any other False reason                          -> Degraded
--   6. no verdict yet (Unknown or no Ready condition)    -> Progressing
local hs = {}

-- BEGIN reason tables (generated from src/reason.rs by `connectivity-operator generate`; do not edit)
-- Reasons only a person can resolve: fix the spec, the Secret, or the state at the vendor.
local needsPerson = {
  ProviderConfigNotFound = true,
  SecretNotFound = true,
  ServiceProfileNotFound = true,
  SimNotFound = true,
  IdentityMismatch = true,
  InUse = true,
  CredentialsGone = true,
  SecretKeyMissing = true,
  InvalidProviderConfig = true,
  CredentialsRejected = true,
  Unauthorized = true,
  Forbidden = true,
  InvalidRequest = true,
  Conflict = true,
  ExternalIdNotFound = true,
  VendorSectionMissing = true,
  InvalidSpec = true,
  InvalidReference = true,
  DuplicateIdentity = true,
  TerminationNotConfirmed = true,
  Terminated = true,
}

-- Work in flight: the operator (or the vendor) is getting there.
local inProgress = {
  Creating = true,
  Pending = true,
}

-- Failures the operator retries by itself with backoff.
local transient = {
  VendorUnavailable = true,
  RateLimited = true,
  OutcomeUnknown = true,
  NotFound = true,
  KubernetesApiError = true,
  StatusWriteFailed = true,
  FinalizerFailed = true,
  ServiceProfileNotReady = true,
}

-- Ready=False findings of an observe-only reconcile that succeeded: the vendor differs from Git
-- and the operator will not change it.
local observedMismatch = {
  Drifted = true,
  NotFound = true,
}
-- END reason tables

local function condition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

-- The condition's message, else its reason.
local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or c.type .. " is " .. tostring(c.status)
end

local function verdict(status, message)
  hs.status = status
  hs.message = message
  return hs
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status
local conditions = nil
if status ~= nil then
  conditions = status.conditions
end
local ready = condition(conditions, "Ready")
local synced = condition(conditions, "Synced")

-- 1. A delete the operator refuses (e.g. endpoints still use the profile) waits for a person.
local function blocksDeletion(c)
  return c ~= nil and c.status == "False" and c.reason == "InUse"
end
if metadata.deletionTimestamp ~= nil then
  if blocksDeletion(synced) then
    return verdict("Degraded", "Deletion blocked: " .. describe(synced))
  end
  if blocksDeletion(ready) then
    return verdict("Degraded", "Deletion blocked: " .. describe(ready))
  end
end

-- 2. Paused: the operator deliberately makes no vendor calls.
if spec.managementPolicy == "Paused" then
  if synced ~= nil and synced.reason == "Paused" and synced.message ~= nil and synced.message ~= "" then
    return verdict("Suspended", synced.message)
  end
  return verdict("Suspended", "managementPolicy is Paused: no vendor calls")
end

-- 3. The status must describe the current spec before it means anything.
if status == nil or status.observedGeneration == nil then
  return verdict("Progressing", "Waiting for the operator to reconcile the object")
end
if metadata.generation ~= nil and status.observedGeneration < metadata.generation then
  return verdict("Progressing", string.format(
    "Waiting for the operator to reconcile generation %d (status is for generation %d)",
    metadata.generation, status.observedGeneration))
end

-- 4. An asynchronous change at the vendor (ConnectivitySubscription) is still in flight.
if status.pendingChange ~= nil then
  if synced ~= nil and synced.reason == "Pending" then
    return verdict("Progressing", describe(synced))
  end
  return verdict("Progressing", "Waiting for the vendor to complete a pending change")
end

-- 5. The last reconcile's outcome first, then the state of the vendor object.
if synced ~= nil and synced.status == "False" then
  if needsPerson[synced.reason] then
    return verdict("Degraded", describe(synced))
  end
  if inProgress[synced.reason] or transient[synced.reason] then
    return verdict("Progressing", describe(synced))
  end
  return verdict("Degraded", describe(synced))
end

if ready ~= nil then
  if ready.status == "True" then
    if metadata.deletionTimestamp ~= nil then
      return verdict("Progressing", "Deleting: waiting for the operator to clean up")
    end
    return verdict("Healthy", describe(ready))
  end
  if ready.status == "False" then
    if needsPerson[ready.reason] then
      return verdict("Degraded", describe(ready))
    end
    if observedMismatch[ready.reason] and synced ~= nil and synced.status == "True" then
      return verdict("Degraded", describe(ready))
    end
    if inProgress[ready.reason] or transient[ready.reason] then
      return verdict("Progressing", describe(ready))
    end
    return verdict("Degraded", describe(ready))
  end
end

-- 6. Unknown, or no Ready condition yet.
if ready ~= nil then
  return verdict("Progressing", describe(ready))
end
return verdict("Progressing", "Waiting for the Ready condition")
