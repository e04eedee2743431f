//! Physical memory and swap.

use campanile_proto::v1::Health;
use sysinfo::System;

pub fn collect(sys: &mut System, h: &mut Health) {
    sys.refresh_memory();
    let total = sys.total_memory();
    if total > 0 {
        h.memory_total_bytes = Some(total);
        h.memory_available_bytes = Some(sys.available_memory().min(total));
    }
    let swap = sys.total_swap();
    h.swap_total_bytes = Some(swap);
    h.swap_free_bytes = Some(sys.free_swap().min(swap));
}
