//! The default crawler worker ROM (`worker.wasm`): records every page and
//! follows its links. See `worker_sdk` for the loop and its grants.

fn main() {
    worker_sdk::run(worker_sdk::follow_links)
}
