//! Column alignment as kubectl's printers do it (Go's text/tabwriter with kubectl's settings:
//! minimum width 6, padding 3, spaces): every column but the last is as wide as its widest
//! cell plus three spaces, so scripts that split kubectl's tables on runs of spaces work on
//! peapod's too.

const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

/// Renders rows (the first is the header) with aligned columns, one line each, each ending in
/// a newline. Widths count characters, not bytes.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            // The last cell of a row is not padded, so it does not widen its column.
            if i + 1 < row.len() {
                widths[i] = widths[i].max((cell.chars().count() + PADDING).max(MIN_WIDTH));
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn aligns_like_kubectl() {
        let t = render(&[
            row(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
            row(&["nginx", "1/1", "Running", "0", "5m"]),
            row(&["a", "0/2", "Init:0/1", "3 (45s ago)", "10d"]),
        ]);
        assert_eq!(
            t,
            "NAME    READY   STATUS     RESTARTS      AGE\n\
             nginx   1/1     Running    0             5m\n\
             a       0/2     Init:0/1   3 (45s ago)   10d\n"
        );
    }

    #[test]
    fn short_columns_get_the_minimum_width() {
        assert_eq!(
            render(&[row(&["A", "B"]), row(&["x", "y"])]),
            "A     B\nx     y\n"
        );
    }

    #[test]
    fn empty() {
        assert_eq!(render(&[]), "");
    }
}
