-- Argo CD health check of the kglue.dev Session (argocd-cm key resource.customizations.health.kglue.dev_Session).
-- What each health status means for a Session: docs/gitops.md.
-- BEGIN common.lua
-- The part of every kglue health check that all kinds share: observedGeneration and the kstatus
-- conditions (Ready, Reconciling, Stalled) the operator writes. Argo CD runs each health script on
-- its own (no `require` of a sibling file), so every health/<kind>.lua carries a copy of this
-- file between the BEGIN and END lines; operator/tests/controllers.rs checks the copies are
-- identical (KGLUE_UPDATE_HEALTH=1 rewrites them). Only Lua's base and table libraries are used:
-- Argo CD's sandbox opens no string library.

-- The condition of the given type, or nil.
local function condition(obj, type)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

-- "Reason: message" of a condition.
local function said(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

-- The health decided by generation and conditions alone; nil when the object is Ready for its
-- current generation, so the kind's part says what Healthy (or worse) means for it.
local function conditions_health(obj)
  local what = obj.kind .. " " .. obj.metadata.name
  if obj.status == nil or obj.status.observedGeneration == nil then
    return {status = "Progressing", message = "Waiting for the kglue operator to reconcile " .. what}
  end
  local generation = obj.metadata.generation
  if generation ~= nil and obj.status.observedGeneration < generation then
    return {
      status = "Progressing",
      message = "Waiting for the kglue operator to reconcile generation " .. generation ..
        " of " .. what .. " (it last reconciled generation " .. obj.status.observedGeneration .. ")",
    }
  end
  local stalled = condition(obj, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    return {status = "Degraded", message = said(stalled)}
  end
  local reconciling = condition(obj, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    return {status = "Progressing", message = said(reconciling)}
  end
  local ready = condition(obj, "Ready")
  if ready == nil then
    return {status = "Progressing", message = "Waiting for the Ready condition of " .. what}
  end
  if ready.status ~= "True" then
    -- The operator pairs every Ready=False it writes with Stalled=True (handled above), so
    -- Ready False or Unknown alone is a transition, as kstatus reads it (InProgress).
    return {status = "Progressing", message = said(ready)}
  end
  return nil
end

-- Run states (Glue's): still going, and ended badly. Stopped is a stop someone asked for.
local active_states = {Waiting = true, Starting = true, Running = true, Stopping = true, Settling = true}
local failed_states = {Failed = true, Timeout = true, Error = true}

-- "run jr-1 Failed: message" of a run record (Job, Crawler or Workflow run).
local function run_text(noun, run)
  local text = noun .. " " .. run.id .. " " .. run.state
  if run.attempt ~= nil and run.attempt > 0 then
    text = text .. " (attempt " .. (run.attempt + 1) .. ")"
  end
  if run.message ~= nil and run.message ~= "" then
    text = text .. ": " .. run.message
  end
  return text
end

-- The health of a Ready object that runs, from its newest run (status.runs is newest first),
-- the way Argo CD's CronJob check reads the last execution: a last run that ended Failed, Timeout
-- or Error is Degraded; a run in progress, a succeeded or stopped one, or none is Healthy.
local function runs_health(obj, noun)
  local runs = obj.status.runs
  if runs == nil or #runs == 0 then
    return {status = "Healthy", message = "Ready; no " .. noun .. " yet"}
  end
  local last = runs[1]
  local text = "Ready; last " .. run_text(noun, last)
  if failed_states[last.state] then
    return {status = "Degraded", message = text}
  end
  if active_states[last.state] and #runs > 1 and failed_states[runs[2].state] then
    text = text .. "; the " .. noun .. " before it, " .. runs[2].id .. ", ended " .. runs[2].state
  end
  return {status = "Healthy", message = text}
end
-- END common.lua

-- A Session is Healthy while it serves (Ready), Progressing while it starts, Suspended once it
-- ended by its idle timeout or maximum duration (a normal end: any change to its spec starts it
-- again), and Degraded when it Failed (the operator writes Stalled then) or cannot start.
local hs = conditions_health(obj)
local ended = {IdleTimeout = true, MaxDuration = true}
if obj.status ~= nil and ended[obj.status.state] and obj.status.observedGeneration ~= nil and
    (obj.metadata.generation == nil or obj.status.observedGeneration >= obj.metadata.generation) then
  local text = "Session ended (" .. obj.status.state .. ")"
  if obj.status.message ~= nil and obj.status.message ~= "" then
    text = text .. ": " .. obj.status.message
  end
  return {status = "Suspended", message = text}
end
if hs ~= nil then
  return hs
end
local text = "Ready"
if obj.status.endpoint ~= nil then
  text = text .. "; serving at " .. obj.status.endpoint
end
if obj.status.activity ~= nil and obj.status.activity.queries ~= nil then
  text = text .. "; " .. obj.status.activity.queries .. " queries"
end
return {status = "Healthy", message = text}
