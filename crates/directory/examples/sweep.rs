use slotmail_directory::placement::triple_pair_balance_possible;
use slotmail_directory::plan;
fn main() {
    let t0 = std::time::Instant::now();
    let mut bad = 0;
    let mut infeasible = 0;
    for k in [1u32, 2] {
        for m in 3..=50usize {
            let names: Vec<String> = (0..m).map(|i| format!("m{i:02}x")).collect();
            for s in [1u32, 2, 3, 4, 5, 7, 8, 16, 40, 80] {
                let t = std::time::Instant::now();
                match plan(&names, s, k) {
                    Ok(p) => {
                        let l = p.layout();
                        let (lo, hi) = l.pair_sharing_range();
                        let el = t.elapsed().as_millis();
                        let possible = k == 1 || triple_pair_balance_possible(&l.slots_per_machine());
                        if !possible { infeasible += 1; }
                        if (hi > lo + 1) || el > 300 {
                            bad += 1;
                            println!("k={k} m={m} s={s}: pairs {lo}..{hi} {el} ms possible={possible}");
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        println!("k={k} m={m} s={s}: {e}");
                    }
                }
            }
        }
    }
    println!("bad {bad} infeasible {infeasible} total {:?}", t0.elapsed());
}
