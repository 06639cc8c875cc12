//! The client: calls `WhoAmI` without a token, then with the given one.
//!
//! ```text
//! grpc-client http://127.0.0.1:50051 $TOKEN
//! ```

use grpc_example::who_am_i;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(endpoint), Some(token)) = (args.next(), args.next()) else {
        eprintln!("usage: grpc-client http://HOST:PORT TOKEN");
        std::process::exit(2);
    };
    for (label, bearer) in [("without a token", None), ("with the token", Some(token.as_str()))] {
        match who_am_i(&endpoint, bearer).await {
            Ok(reply) => println!(
                "{label}: {} ({}; {})",
                reply.subject,
                reply.method,
                reply.scopes.join(" ")
            ),
            Err(status) => println!("{label}: {:?}: {}", status.code(), status.message()),
        }
    }
}
