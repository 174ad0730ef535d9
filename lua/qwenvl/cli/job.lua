-- qwenvl.cli.job: `qwenvl job ...` and `qwenvl batch ... --batch-api`:
-- DashScope's Batch API jobs, handed over whole to qwenvl.batch.cli (its
-- own flags and subcommands; see docs/batch.md).
local batch_cli = require("qwenvl.batch.cli")

local M = { name = "job", summary = "Batch API jobs: list, status, wait, results, cancel, retry" }

M.help = batch_cli.HELP.job

--- Run `args` (starting with "job" or "batch") through qwenvl.batch.cli.
-- hooks: {batch_images = fn, tty = bool} from the dispatcher.
function M.main(args, io_handles, hooks)
  return batch_cli.main(args, io_handles, hooks)
end

--- True when a batch command line asks for the Batch API.
function M.wants(args)
  for i = 2, #args do
    if args[i] == "--" then return false end
    if args[i] == "--batch-api" then return true end
  end
  return false
end

return M
