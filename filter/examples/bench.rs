//! Per-request cost of the filter core's hot paths, natively (the Wasm VM adds its own
//! overhead on top; this is for comparing changes, not absolute claims). Prints ns/op.
//!
//!     cargo run --release -p meshkit-filter --example bench

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use meshkit_filter::core::catalog::{Catalog, CatalogEntry};
use meshkit_filter::core::cause_table::{Cause, CauseTable};
use meshkit_filter::core::config::Direction;
use meshkit_filter::core::error_code::GrpcStatus;
use meshkit_filter::core::extract::{self, Extracted};
use meshkit_filter::core::grpc_status::encode_details;
use meshkit_filter::core::headers::StaticHeaders;
use meshkit_filter::core::report::{decide, ResponseFacts};
use meshkit_filter::core::retry_budget::{Budget, BudgetParams, Window};
use meshkit_filter::core::shared_data::{self, CasStore, SetError};
use meshkit_filter::core::trace_context::parse_traceparent;

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f(); // warm up
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("{name:<48} {ns:>10.0} ns/op");
}

struct Store(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl CasStore for Store {
    fn get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)> {
        self.0.borrow().get(key).map(|(v, c)| (v.clone(), Some(*c)))
    }
    fn set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), SetError> {
        let mut m = self.0.borrow_mut();
        let cas = m.get(key).map_or(0, |(_, c)| c + 1);
        m.insert(key.into(), (value.to_vec(), cas));
        Ok(())
    }
}

fn main() {
    let n = 200_000;
    let catalog = Catalog::new(
        &(0..200)
            .map(|i| CatalogEntry {
                code: format!("CM{i:06}"),
                http_status: 503,
                grpc_status: GrpcStatus::Unavailable,
                retryable: i % 2 == 0,
                message: "m".into(),
            })
            .collect::<Vec<_>>(),
    );

    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    bench("traceparent parse", n, || {
        black_box(parse_traceparent(black_box(tp)));
    });

    let header = StaticHeaders::default().with("x-app-error-code", "CM000100");
    bench("extract: app header", n, || {
        black_box(extract::from_header(black_box(&header), "x-app-error-code"));
    });

    let details = encode_details(14, "unavailable", "CM000100", &[("origin", "users")]);
    let grpc = StaticHeaders::default().with("grpc-status-details-bin", details);
    bench("extract: grpc-status-details-bin (ErrorInfo)", n, || {
        black_box(extract::from_grpc(black_box(&grpc), None));
    });

    let body = format!(
        r#"{{"type":"about:blank","status":503,"code":"CM000100","detail":"{}"}}"#,
        "x".repeat(900)
    );
    bench("extract: 1 KiB problem+json body", n, || {
        black_box(extract::from_problem_json(
            black_box(body.as_bytes()),
            16 * 1024,
        ));
    });

    bench("decide (200-code catalog)", n, || {
        black_box(decide(
            &catalog,
            ResponseFacts {
                direction: Direction::Inbound,
                service: "recipes".into(),
                upstream: None,
                local_reply: None,
                extracted: Extracted::Code {
                    code: "CM000100".into(),
                    source: extract::Source::Header,
                },
                propagated: None,
                remembered: None,
                is_error: true,
            },
        ));
    });

    let store = Store(RefCell::new(HashMap::new()));
    let budget = Budget::new(&BudgetParams::default(), 15_000);
    let mut now = 0u64;
    bench("budget: grant + settle (two CAS round trips)", n, || {
        now += 1;
        let r = shared_data::update(&store, "k", |bytes| {
            let mut w = Window::load(bytes, &budget, now);
            let r = w.grant(&budget, now, 3);
            (Some(w.encode()), r)
        });
        if let Some(r) = r {
            black_box(shared_data::update(&store, "k", |bytes| {
                let mut w = Window::load(bytes, &budget, now);
                w.settle(&budget, now, r, 1);
                (Some(w.encode()), ())
            }));
        }
    });

    let table = CauseTable::new(512, 15_000);
    let cause = Cause {
        origin: "users".into(),
        code: "CM503001".into(),
    };
    let mut i = 0u64;
    bench("cause table: remember + take", n, || {
        i += 1;
        let id = format!("{i:08x}-0000-4000-8000-000000000000");
        table.remember(&store, i, id.as_bytes(), &cause);
        black_box(table.take(&store, i, id.as_bytes(), 0));
    });
}
