//! Shared pieces of the examples' command line.
use crate::flow::LayerInfo;

/// Renders a model summary as a text table (layer, input, output, parameters) followed by a
/// last line `parameters: N` with the model's total.
pub fn layer_table(rows: &[LayerInfo], total_params: usize) -> String {
    let headers = ["#", "layer", "input", "output", "parameters"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let index = if r.name.starts_with("  ") {
                String::new()
            } else {
                i.to_string()
            };
            [
                index,
                r.name.clone(),
                r.input.clone(),
                r.output.clone(),
                group_thousands(r.params),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 4 {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers) + "\n";
    out += &"-".repeat(widths.iter().sum::<usize>() + 8);
    out.push('\n');
    for row in &cells {
        out += &line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        out.push('\n');
    }
    out += &format!("parameters: {total_params}\n");
    out
}

/// `1711818` → `1,711,818`.
pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
