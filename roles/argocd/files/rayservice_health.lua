local hs = {status = "Progressing", message = "Waiting for KubeRay to report the RayService's conditions"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "UpgradeInProgress" and condition.status == "True" then
    hs.message = condition.message or "Upgrading the RayService"
    return hs
  end
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Serve applications are running"
  return hs
end
-- KubeRay reports Ready=False while the cluster starts (reason Initializing); anything else is a failure.
if ready.reason == nil or ready.reason == "Initializing" then
  hs.message = ready.message or "Starting the Ray cluster"
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "") .. ": " .. (ready.message or "RayService is not ready")
return hs
