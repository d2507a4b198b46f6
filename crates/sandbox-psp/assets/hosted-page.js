// The sandbox's hosted card form, made pleasant: the number is grouped and its brand named as it
// is typed, the expiry gets its slash, and each field says what is wrong as soon as the buyer
// leaves it (and all of them on submit, the first wrong one taking the focus). The form works
// without this script; the server checks everything again.
(function () {
  "use strict";
  var form = document.querySelector("form[method=post]");
  var number = document.getElementById("card_number");
  if (!form || !number) return;
  var exp = document.getElementById("exp");
  var cvc = document.getElementById("cvc");
  var brandBadge = document.getElementById("card-brand");
  var button = form.querySelector("button[type=submit]");
  var buttonLabel = button.textContent;
  form.noValidate = true; // our messages, not the browser's bubbles

  var BRANDS = [
    { name: "Visa", pattern: /^4/, groups: [4, 4, 4, 4, 3], cvc: 3 },
    { name: "Mastercard", pattern: /^(5[1-5]|2(2[2-9]|[3-6]\d|7[01]|720))/, groups: [4, 4, 4, 4], cvc: 3 },
    { name: "American Express", pattern: /^3[47]/, groups: [4, 6, 5], cvc: 4 },
    { name: "Discover", pattern: /^(6011|65|64[4-9])/, groups: [4, 4, 4, 4, 3], cvc: 3 },
    { name: "JCB", pattern: /^35/, groups: [4, 4, 4, 4, 3], cvc: 3 },
    { name: "Diners Club", pattern: /^3(0[0-5]|[689])/, groups: [4, 6, 4, 5], cvc: 3 }
  ];

  function digits(text) { return text.replace(/\D/g, ""); }
  function brandOf(d) {
    for (var i = 0; i < BRANDS.length; i++) if (BRANDS[i].pattern.test(d)) return BRANDS[i];
    return null;
  }
  function group(d, groups) {
    var out = [], at = 0;
    for (var i = 0; i < groups.length && at < d.length; i++) {
      out.push(d.slice(at, at + groups[i]));
      at += groups[i];
    }
    if (at < d.length) out.push(d.slice(at));
    return out.join(" ");
  }
  function luhn(d) {
    var sum = 0;
    for (var i = 0; i < d.length; i++) {
      var n = +d[d.length - 1 - i];
      if (i % 2) { n *= 2; if (n > 9) n -= 9; }
      sum += n;
    }
    return sum % 10 === 0;
  }

  // Reformats a field while keeping the caret after the same digit.
  function reformat(input, format) {
    var caret = input.selectionStart === null ? input.value.length : input.selectionStart;
    var before = digits(input.value.slice(0, caret)).length;
    var next = format(digits(input.value));
    if (next === input.value) return;
    input.value = next;
    var pos = 0, seen = 0;
    while (pos < next.length && seen < before) { if (/\d/.test(next[pos])) seen++; pos++; }
    while (pos < next.length && !/\d/.test(next[pos])) pos++; // past a space or slash just added
    if (document.activeElement === input) input.setSelectionRange(pos, pos);
  }

  function showBrand() {
    var brand = brandOf(digits(number.value));
    brandBadge.textContent = brand ? brand.name : "";
    number.setAttribute("data-brand", brand ? brand.name : "");
  }

  function problem(input) {
    var d = digits(input.value);
    if (input === number) {
      if (!d) return "Enter the card number.";
      if (d.length < 12 || d.length > 19) return "The card number is 12 to 19 digits; check it.";
      if (!luhn(d)) return "This card number is not valid; check it.";
    } else if (input === exp) {
      var m = /^(\d\d)\/(\d\d)$/.exec(input.value.trim());
      if (!input.value.trim()) return "Enter the expiry date.";
      if (!m) return "Enter the expiry date as MM/YY.";
      var month = +m[1], year = 2000 + +m[2], now = new Date();
      if (month < 1 || month > 12) return "The expiry month must be 01 to 12.";
      if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
        return "This card has expired: check the date, or use another card.";
      }
    } else if (input === cvc) {
      var brand = brandOf(digits(number.value));
      var want = brand ? brand.cvc : 3;
      if (!d) return "Enter the security code.";
      if (d.length !== want && !(d.length >= 3 && d.length <= 4 && !brand)) {
        return "The security code is the " + want + " digits on the card.";
      }
    }
    return "";
  }

  function check(input) {
    var message = problem(input);
    var slot = document.getElementById(input.id + "-error");
    if (slot) slot.textContent = message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    return !message;
  }

  number.addEventListener("input", function () {
    reformat(number, function (d) {
      var brand = brandOf(d);
      return group(d.slice(0, 19), brand ? brand.groups : [4, 4, 4, 4, 3]);
    });
    showBrand();
    // A field the buyer is fixing is re-checked as they type; a fresh one only when left.
    if (number.getAttribute("aria-invalid")) check(number);
  });
  exp.addEventListener("input", function (event) {
    var deleting = event.inputType && event.inputType.indexOf("delete") === 0;
    reformat(exp, function (d) {
      if (d.length === 1 && d > "1") d = "0" + d;
      d = d.slice(0, 4);
      if (d.length > 2 || (d.length === 2 && !deleting)) return d.slice(0, 2) + "/" + d.slice(2);
      return d;
    });
    if (exp.getAttribute("aria-invalid")) check(exp);
  });
  cvc.addEventListener("input", function () {
    reformat(cvc, function (d) { return d.slice(0, 4); });
    if (cvc.getAttribute("aria-invalid")) check(cvc);
  });
  [number, exp, cvc].forEach(function (input) {
    input.addEventListener("blur", function () { if (input.value) check(input); });
  });

  form.addEventListener("submit", function (event) {
    var firstBad = null;
    [number, exp, cvc].forEach(function (input) {
      if (!check(input) && !firstBad) firstBad = input;
    });
    if (firstBad) {
      event.preventDefault();
      firstBad.focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Paying…";
  });

  // A form shown again (the server refused it, or the back button) keeps its values: show
  // their brand, and let a refused attempt's message be read first.
  if (number.value) {
    reformat(number, function (d) {
      var brand = brandOf(d);
      return group(d.slice(0, 19), brand ? brand.groups : [4, 4, 4, 4, 3]);
    });
    showBrand();
  }
  var errors = document.getElementById("form-errors");
  if (errors) errors.focus();
  window.addEventListener("pageshow", function () {
    button.disabled = false;
    button.textContent = buttonLabel;
  });
})();
