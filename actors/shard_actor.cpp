#include "actors/shard_actor.hpp"

#include <pthread.h>
#include <sched.h>

namespace mesob::actors {

caf::actor spawn_shard_actor(caf::actor_system& sys, shard* s, int cpu) {
  return sys.spawn<caf::detached>([s, cpu](caf::event_based_actor* self) -> caf::behavior {
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    (void)self;
    return {
        [s](const std::shared_ptr<dispatch>& d) {
          for (auto& b : d->batches) {
            s->execute(*b);
            if (b->shards_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1 && b->done)
              b->done(*b);
          }
          if (d->cut) {
            s->cut(*d->cut);
            if (d->cut->shards_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
              d->cut->done(*d->cut);
          }
        },
    };
  });
}

}  // namespace mesob::actors
