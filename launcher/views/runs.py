from django.shortcuts import render


def run_list(request):
    return render(request, "launcher/run_list.html")


def run_detail(request, run_id: int):
    return render(request, "launcher/run_list.html")
