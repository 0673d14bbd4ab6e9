// Dates and sizes in the reader's locale and time zone.

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekdayFmt = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const shortDateFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
const longDayFmt = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });
const longDayYearFmt = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "long", year: "numeric" });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });

const DAY_MS = 86_400_000;

export const toDate = (iso) => (iso instanceof Date ? iso : new Date(iso));

export function dayKey(iso) {
  const d = toDate(iso);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

function startOfDay(d) {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

function daysAgo(iso) {
  return Math.round((startOfDay(new Date()) - startOfDay(toDate(iso))) / DAY_MS);
}

export const timeOfDay = (iso) => timeFmt.format(toDate(iso));
export const fullDate = (iso) => fullFmt.format(toDate(iso));

/** The label of a day separator in the message list. */
export function dayLabel(iso) {
  const ago = daysAgo(iso);
  if (ago === 0) return "Today";
  if (ago === 1) return "Yesterday";
  const d = toDate(iso);
  return d.getFullYear() === new Date().getFullYear() ? longDayFmt.format(d) : longDayYearFmt.format(d);
}

/** The compact time shown in the inbox. */
export function inboxTime(iso) {
  if (!iso) return "";
  const ago = daysAgo(iso);
  if (ago === 0) return timeOfDay(iso);
  if (ago === 1) return "Yesterday";
  if (ago < 7) return weekdayFmt.format(toDate(iso));
  return shortDateFmt.format(toDate(iso));
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits).replace(/\.0$/, "")} ${units[unit]}`;
}

export const number = (n) => new Intl.NumberFormat().format(n);
