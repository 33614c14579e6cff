// The differential of review.html opened from disk, where no Python answers: a port of
// bmpipe.stages.aggregate.differential, bmpipe.criteria and the report's summary and class rows
// (bmpipe.report.content.DifferentialTables), driven by the same taxonomy and criteria YAML (embedded).
// tests/test_review_browser.py runs it in Chromium and compares it with bmpipe.report.review_page.live_summary.
const BmpipeRules = (() => {
  // Python's f"{x:.{d}f}": correctly rounded, exact ties to even (JavaScript's toFixed breaks ties upwards).
  function fixed(x, d) {
    const s = x.toFixed(d);
    const long = Math.abs(x).toFixed(Math.min(100, d + 40));
    const point = long.indexOf(".");
    const rest = long.slice(point + 1 + d);
    if (!/^50*$/.test(rest)) return s;
    const kept = long.slice(0, point + 1 + d).replace(/\.$/, "");
    const last = Number(kept[kept.length - 1]);
    return last % 2 === 0 ? (x < 0 ? "-" : "") + kept : s;
  }

  function lgamma(x) {  // Lanczos (g = 7, n = 9): about 15 significant digits
    const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
      -176.61503916999185, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
      1.5056327351493116e-7];
    x -= 1;
    let a = c[0];
    const t = x + 7.5;
    for (let i = 1; i < 9; i++) a += c[i] / (x + i);
    return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
  }

  function betacf(a, b, x) {  // continued fraction of the incomplete beta function (Lentz)
    const tiny = 1e-300;
    let c = 1, d = 1 - (a + b) * x / (a + 1);
    d = 1 / (Math.abs(d) < tiny ? tiny : d);
    let h = d;
    for (let m = 1; m <= 100000; m++) {
      const m2 = 2 * m;
      let aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
      d = 1 + aa * d; d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
      h *= d * c;
      aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
      d = 1 + aa * d; d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
      const del = d * c;
      h *= del;
      if (Math.abs(del - 1) < 1e-16) break;
    }
    return h;
  }

  function ibeta(x, a, b) {  // regularized incomplete beta I_x(a, b)
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    const front = Math.exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * Math.log(x) + b * Math.log1p(-x));
    if (x < (a + 1) / (a + b + 2)) return front * betacf(a, b, x) / a;
    return 1 - front * betacf(b, a, 1 - x) / b;
  }

  function betaPpf(q, a, b) {  // scipy.stats.beta.ppf, by bisection to the last bit
    let lo = 0, hi = 1;
    for (let i = 0; i < 200 && hi - lo > 0; i++) {
      const mid = (lo + hi) / 2;
      if (mid === lo || mid === hi) break;
      if (ibeta(mid, a, b) < q) lo = mid; else hi = mid;
    }
    return (lo + hi) / 2;
  }

  function clopperPearson(k, n) {  // bmpipe.stats.clopper_pearson, 95%, in percent
    if (n === 0) return [0, 100];
    const low = k === 0 ? 0 : betaPpf(0.025, k, n - k + 1);
    const high = k === n ? 1 : betaPpf(0.975, k + 1, n - k);
    return [100 * low, 100 * high];
  }

  function ratioInterval(a, b) {
    if (b === 0) return null;
    const [low, high] = clopperPearson(a, a + b).map((p) => p / 100);
    return [low / (1 - low), high / (1 - high)];
  }

  const pct = (k, n) => (n ? 100 * k / n : 0);
  const sum = (codes, of) => codes.reduce((s, c) => s + (of[c] || 0), 0);
  const ciRange = (ci) => `${fixed(ci[0], 1)}-${fixed(ci[1], 1)}`;
  const ciText = (ci) => `95% CI ${ciRange(ci)}`;
  const pctWithCi = (p, ci) => `${fixed(p, 1)}% (${ciText(ci)})`;

  function within(p, low, high) {  // bmpipe.criteria.fmt_pct_within
    for (const d of [1, 2, 3]) {
      const text = fixed(p, d);
      const shown = parseFloat(text);
      if (shown >= low && (high === null || shown < high)) return text;
    }
    return fixed(Math.floor(p * 1000) / 1000, 3);
  }

  function span(band) {
    if (band.high === null) return `≥${band.low}%`;
    if (band.low === 0) return `<${band.high}%`;
    return `${band.low}-${band.high - 1}%`;
  }

  function borderlineText(thresholds) {
    const limits = thresholds.map((t) => `${t}%`).join(" and ");
    const plural = thresholds.length > 1 ? "s" : "";
    return ` The interval crosses the ${limits} threshold${plural}: borderline, a larger count or review is advised.`;
  }

  function blastFindings(crit, p, ci) {
    const band = crit.blasts.find((b) => p >= b.low && (b.high === null || p < b.high));
    const crossed = [];
    if (band.low > 0 && ci[0] < band.low) crossed.push(band.low);
    if (band.high !== null && ci[1] >= band.high) crossed.push(band.high);
    const measured = `Blast percentage ${within(p, band.low, band.high)}% (${ciText(ci)})`;
    return Object.entries(crit.systems).map(([system, label]) => {
      const category = band.category[system];
      let text;
      if (category) {
        text = `${measured} lies in the ${span(band)} range of ${label} ${category}.`;
      } else {
        const first = crit.blasts.find((b) => b.category[system]);
        text = `${measured} lies in the ${span(band)} range of ${label}, below ${first.category[system]} (${span(first)}).`;
      }
      const note = (band.note || {})[system];
      if (note) text += " " + note;
      if (crossed.length) text += borderlineText(crossed);
      return { kind: "blasts", text, borderline: crossed.length > 0 };
    });
  }

  function dysplasiaFindings(crit, dys) {
    const spec = crit.dysplasia;
    const t = spec.threshold_pct;
    const systems = spec.sources.map((s) => crit.systems[s]).join(", ");
    const out = [];
    for (const lineage of spec.lineages) {
      const n = dys.scored[lineage];
      if (!n) continue;
      const p = dys.pct[lineage], ci = dys.ci[lineage];
      const above = p >= t;
      const shown = above ? within(p, t, null) : within(p, 0, t);
      let text = `Dysplastic ${lineage} cells ${shown}% of ${n} (${ciText(ci)}) ${above ? "reaches" : "is below"} ` +
        `the ${t}% threshold for significant ${lineage} dysplasia (${systems}).`;
      const borderline = ci[0] < t && t <= ci[1];
      if (borderline) text += borderlineText([t]);
      out.push({ kind: "dysplasia", text, borderline });
    }
    return out;
  }

  function plasmaFindings(crit, p, ci) {
    const out = [];
    for (const rule of crit.plasma_cells) {
      const t = rule.threshold_pct;
      const borderline = ci[0] < t && t <= ci[1];
      if (p >= t || borderline) {
        const above = p >= t;
        const shown = above ? within(p, t, null) : within(p, 0, t);
        let text = `Plasma cells ${shown}% (${ciText(ci)}) ${above ? "reaches" : "is just below"} ${rule.meaning}; ` +
          "clonality needs flow cytometry or immunohistochemistry.";
        if (borderline) text += borderlineText([t]);
        out.push({ kind: "plasma_cells", text, borderline });
      }
    }
    return out;
  }

  function countFindings(crit, n) {
    const minimum = crit.minimum_count.cells;
    if (n >= minimum) return [{ kind: "count", text: `${n} nucleated cells counted (ICSH minimum ${minimum}).`, borderline: false }];
    return [{ kind: "count", borderline: true, text: `Only ${n} nucleated cells counted, below the ICSH minimum of ` +
      `${minimum}: percentages are imprecise, see their intervals.` }];
  }

  function provenance(findings, R, S) {
    const restingOn = {
      blasts: R.groups["blasts"].filter((c) => S.synthetic_only.includes(c)),
      plasma_cells: R.groups["plasma cells"].filter((c) => S.synthetic_only.includes(c)),
    };
    return findings.map((f) => {
      let text = f.text;
      if ((restingOn[f.kind] || []).length) {
        text += ` This percentage rests on ${restingOn[f.kind].join(", ")}, which the classifier learned from ` +
          "synthetic (phantom) cells with no or too few real ones and has never been shown to recognise on real " +
          "cells: treat it as unvalidated and confirm every such cell on the smear.";
      } else if (f.kind === "dysplasia" && S.dysplasia_synthetic_only) {
        text += " Dysplasia was learned only from synthetic (phantom) cells and is unvalidated on real marrow: " +
          "confirm on the smear.";
      }
      return { kind: f.kind, text, borderline: f.borderline };
    });
  }

  function nothingCounted(detected, unidentified) {
    const seen = detected === 0 ? "no nucleated cell was detected" :
      `${detected} cells were detected but none could be counted (${unidentified} not identifiable, the others ` +
      "outside the denominator)";
    return `No nucleated cells counted: ${seen}, so no percentage, ratio or criterion can be given. A wrong ` +
      "resolution (µm/px in the slide's metadata or --mpp) is the usual cause, then focus, stain, or a smear " +
      "with no readable area: check the slide before repeating the count.";
  }

  // counts: cells per code; dysplastic: dysplastic cells per code; R: the rules; S: what no relabel changes.
  // Returns what bmpipe.report.review_page.live_summary returns for the same cells.
  function summarise(counts, dysplastic, R, S) {
    const crit = R.criteria;
    const n = sum(R.denominator, counts);
    const percent = {}, ci = {};
    for (const c of R.denominator) { percent[c] = pct(counts[c] || 0, n); ci[c] = clopperPearson(counts[c] || 0, n); }
    const blasts = sum(R.groups["blasts"], counts), plasma = sum(R.groups["plasma cells"], counts);
    const myeloid = sum(R.me_myeloid, counts), erythroid = sum(R.me_erythroid, counts);
    const notScored = crit.dysplasia.not_scored || [];
    const dys = { scored: {}, pct: {}, ci: {} };
    for (const lineage of crit.dysplasia.lineages) {
      const codes = R.codes.filter((c) => R.lineage[c] === lineage && !notScored.includes(c));
      const k = sum(codes, dysplastic), m = sum(codes, counts);
      dys.scored[lineage] = m; dys.pct[lineage] = pct(k, m); dys.ci[lineage] = clopperPearson(k, m);
    }
    const blastPct = pct(blasts, n), blastCi = clopperPearson(blasts, n);
    const plasmaPct = pct(plasma, n), plasmaCi = clopperPearson(plasma, n);
    const minimum = crit.minimum_count.cells;

    let findings = [["resolution", S.resolution_warning], ["domain", S.domain_warning]]
      .filter(([, text]) => text).map(([kind, text]) => ({ kind, text, borderline: true }));
    if (n === 0) {
      findings.push({ kind: "count", text: nothingCounted(sum(R.codes, counts), counts.NIF || 0), borderline: true });
    } else {
      findings = findings.concat(provenance(countFindings(crit, n).concat(blastFindings(crit, blastPct, blastCi),
        dysplasiaFindings(crit, dys), plasmaFindings(crit, plasmaPct, plasmaCi)), R, S));
    }

    const summary = [["Nucleated cells counted",
      `${n} (${n >= minimum ? "reaches" : "below"} the ICSH minimum of ${minimum})`]];
    const s = S.sample;
    if (s && Object.keys(s).length) {
      summary.push(["Sample", `${n} counted of about ${s.estimated_cells_in_area} in the analysed area: the count ` +
        `stopped at --max-cells ${s.max_cells} after ${s.tiles_read} of ${s.tiles_planned} tiles, drawn at random ` +
        "over the whole smear; the intervals are those of this sample"]);
    }
    if (n) {
      summary.push(["Blasts", pctWithCi(blastPct, blastCi)], ["Plasma cells", pctWithCi(plasmaPct, plasmaCi)]);
      if (!erythroid) {
        summary.push(["M:E ratio", "n/a (no erythroid cells)"]);
      } else {
        const r = ratioInterval(myeloid, erythroid);
        summary.push(["M:E ratio", fixed(myeloid / erythroid, 2) + (r ? ` (95% CI ${fixed(r[0], 2)}-${fixed(r[1], 2)})` : "")]);
      }
      for (const lineage of crit.dysplasia.lineages) {
        const m = dys.scored[lineage];
        if (m) summary.push([`Dysplastic ${lineage} cells`, `${pctWithCi(dys.pct[lineage], dys.ci[lineage])} of ${m}`]);
      }
    }

    const rows = [];
    for (const code of R.codes) {
      const count = counts[code] || 0;
      const counted = code in percent;
      if (count === 0 && !counted) continue;
      rows.push({ code, name: R.names[code] + (S.synthetic_only.includes(code) ? " †" : ""), count,
        pct: counted ? fixed(percent[code], 1) : "not counted", ci: counted ? ciRange(ci[code]) : "" });
    }
    return { findings: findings.map((f) => ({ text: f.text, borderline: f.borderline })), summary, rows };
  }

  return { summarise, fixed, clopperPearson };
})();
