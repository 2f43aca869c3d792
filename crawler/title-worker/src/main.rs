//! An example custom worker: the page's title and meta description as
//! fields, its links followed. Run it with
//! `crawler.wasm workers N --rom - < title-worker.wasm`.

use worker_sdk::{json, Extracted, Map, Page};

fn extract(page: &Page<'_>) -> Extracted {
    let mut fields = Map::new();
    fields.insert("title".into(), json!(page.text("title")));
    fields.insert(
        "description".into(),
        json!(page.attr("meta[name=description]", "content")),
    );
    Extracted {
        fields,
        outlinks: page.links(),
    }
}

fn main() {
    worker_sdk::run(extract)
}
