//! Writes sample EVNs to look at: `cargo run -p evn-render --example samples -- DIR`, then
//! e.g. `pdftoppm -png -r 80 DIR/small.pdf DIR/small`.

use evn_render::{render_pdf, sample, EvnDocument};

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "evn-samples".into()),
    );
    std::fs::create_dir_all(&dir).expect("create the output folder");
    for (name, doc) in [
        ("small", sample::small_doc()),
        ("three", sample::big_doc(130)),
        ("big", sample::big_doc(5000)),
        (
            "empty",
            EvnDocument::build(sample::header(), vec![], false, vec![]),
        ),
        ("stress", sample::stress_doc()),
    ] {
        let pdf = render_pdf(&doc).expect("render");
        std::fs::write(dir.join(format!("{name}.pdf")), &pdf.bytes).expect("write");
        println!(
            "{}: {} pages, {} bytes",
            dir.join(format!("{name}.pdf")).display(),
            pdf.pages,
            pdf.bytes.len()
        );
    }
}
