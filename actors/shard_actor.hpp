// shard_actor: the CAF actor hosting one shard. Spawned detached (its own thread), since
// a cross-shard decision waits for the other shard's part inside a batch and needs that
// shard running at the same time. Receives `dispatch` messages from the sequencer, in
// log order; the shard object lives in the actor's state and dies with it.
#pragma once

#include <caf/all.hpp>
#include <memory>

#include "actors/batch.hpp"
#include "actors/shard.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<mesob::actors::dispatch>)

namespace mesob::actors {

// Spawns the actor for `s`; `s` must outlive it. `cpu` >= 0 pins its thread.
caf::actor spawn_shard_actor(caf::actor_system& sys, shard* s, int cpu);

}  // namespace mesob::actors
