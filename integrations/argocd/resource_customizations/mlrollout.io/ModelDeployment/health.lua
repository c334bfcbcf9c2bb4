-- Argo CD health of an mlrollout.io ModelDeployment (a model served from MLflow, retrained
-- on drift and rolled out through shadow traffic and analysed canary steps).
--
--   Healthy      Stable or Promoted, and the stable variant is Ready
--   Progressing  not yet observed (status or generation behind), Pending, Retraining,
--                Evaluating, Shadow, Progressing (steps), or waiting for replicas
--   Suspended    paused by a person (mlrollout.io/pause) or waiting for one (an analysis
--                that could not decide)
--   Degraded     RolledBack, Failed, or an invalid spec (Ready=False, reason InvalidSpec)
--
-- Plain Lua 5.1 without the string library (Argo CD opens only base, table and os unless
-- useOpenLibs is set): strings are built with `..` alone.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value, default)
  if value == nil or value == "" then
    return default
  end
  return tostring(value)
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status describes " .. text(status.observedGeneration, "none") .. ")"
  return hs
end

local phase = text(status.phase, "Pending")
local ready = condition(status, "Ready")
local stable = text(status.stableVersion, "none")
local candidate = text(status.candidateVersion, "none")
local message = text(status.message, "")

-- Where the lifecycle stands, in a few words.
local function where()
  if phase == "Progressing" then
    local step = 1
    if status.currentStep ~= nil then
      step = status.currentStep + 1
    end
    return "Progressing: step " .. step .. ", " .. text(status.canaryWeight, 0) ..
      "% of traffic on version " .. candidate
  elseif phase == "Shadow" then
    return "Shadow: " .. text(status.mirrorPercent, 0) .. "% of traffic mirrored to version " .. candidate
  elseif phase == "Evaluating" then
    return "Evaluating: version " .. candidate .. " against the champion (version " .. stable .. ")"
  elseif phase == "Retraining" then
    local job = "?"
    local attempts = status.retrainingAttempts
    if attempts ~= nil and #attempts > 0 then
      job = text(attempts[#attempts].jobName, "?")
    end
    return "Retraining: Job " .. job .. " is running"
  end
  return phase .. ": version " .. stable
end

if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "Invalid spec, nothing applied: " .. text(ready.message, "")
  return hs
end

if status.paused == true then
  hs.status = "Suspended"
  if status.pauseReason == "inconclusiveAnalysis" then
    hs.message = "Waiting for a person: the analysis could not decide. " .. where() ..
      ". Resume, promote or abort"
  else
    hs.message = "Paused by a person (mlrollout.io/pause). " .. where() .. ". Resume to continue"
  end
  return hs
end

if phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message .. ". Version " .. stable .. " serves all traffic"
  return hs
end

if phase == "Retraining" or phase == "Evaluating" or phase == "Shadow" or phase == "Progressing" then
  hs.status = "Progressing"
  hs.message = where()
  return hs
end

if phase == "Pending" then
  hs.status = "Progressing"
  if ready ~= nil then
    hs.message = "Pending: " .. text(ready.message, text(ready.reason, ""))
  else
    hs.message = "Pending: waiting for the operator"
  end
  return hs
end

if phase == "Stable" or phase == "Promoted" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Healthy"
    hs.message = phase .. ": version " .. stable .. " serves all traffic"
  else
    hs.status = "Progressing"
    local why = "waiting for the Ready condition"
    if ready ~= nil then
      why = text(ready.message, why)
    end
    hs.message = phase .. ": " .. why
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. phase
return hs
