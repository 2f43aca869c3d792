//! `crawl-site --port P --pages N --seed S`: serves the local test site on
//! 127.0.0.1 until interrupted.

use clap::Parser;

#[derive(Parser)]
#[command(about = "A deterministic local web site (127.0.0.1 only) for crawler tests")]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Pages of the link graph.
    #[arg(long, default_value_t = 100)]
    pages: u32,
    /// Seed of the link graph.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// robots.txt Crawl-delay in ms (0: none).
    #[arg(long, default_value_t = 0)]
    crawl_delay_ms: u32,
    /// Append every request to this file (`ms method path`).
    #[arg(long)]
    log: Option<std::path::PathBuf>,
    /// Leave out page 0's links to the hanging, slow, rate-limited and
    /// failing paths.
    #[arg(long)]
    no_special_links: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (addr, _site) = crawl_site::Site::start(crawl_site::Config {
        port: args.port,
        pages: args.pages,
        seed: args.seed,
        crawl_delay_ms: args.crawl_delay_ms,
        log_path: args.log,
        special_links: !args.no_special_links,
    })?;
    println!("serving http://{addr}/page/0 ({} pages)", args.pages);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}
