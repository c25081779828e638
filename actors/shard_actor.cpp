#include "actors/shard_actor.hpp"

#include <pthread.h>
#include <cstdint>
#include <sched.h>

namespace mesob::actors {

namespace {
// Owed accounts copied per step of a cut: ~88 bytes each, so about 0.1 ms a step.
constexpr size_t cut_slice_accounts = 4096;

void finish_cut(shard* s) {
  auto c = s->end_cut();
  if (c->shards_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) c->done(*c);
}
}  // namespace

caf::actor spawn_shard_actor(caf::actor_system& sys, shard* s, int cpu) {
  return sys.spawn<caf::detached>([s, cpu](caf::event_based_actor* self) -> caf::behavior {
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    const std::string name = "mesob.shard" + std::to_string(s->index());
    pthread_setname_np(pthread_self(), name.c_str());

    return {
        [s, self](const std::shared_ptr<dispatch>& d) {
          for (auto& b : d->batches) {
            s->execute(*b);
            s->executed(*b);
          }
          s->finish_all();  // nothing is left set aside between messages
          if (auto& g = d->events) {
            s->expire_until(g->sweep_to);
            s->take_expired(g->expired[s->index()]);
            s->take_decided(g->decided[s->index()]);
            if (g->shards_remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
              auto group = g;
              group->ready(group);
            }
          }
          s->dispatch_handled(d->batches.size());
          // A cut in progress advances one slice per message, so batches queued
          // behind it wait at most one slice.
          if (s->cutting() && s->continue_cut(cut_slice_accounts)) finish_cut(s);
          if (d->cut) {
            if (s->cutting()) {  // the engine sends one cut at a time; be safe anyway
              s->continue_cut(SIZE_MAX);
              finish_cut(s);
            }
            s->expire_until(d->cut->clock_ns);  // every shard's copies as of the cut's clock
            s->begin_cut(d->cut);
            self->send(self, caf::atom_value(caf::atom("cutstep")));
          }
        },
        [=](caf::atom_value) {
          if (!s->cutting()) return;
          if (s->continue_cut(cut_slice_accounts)) finish_cut(s);
          else self->send(self, caf::atom_value(caf::atom("cutstep")));
        },
    };
  });
}

}  // namespace mesob::actors
